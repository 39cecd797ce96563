/*
 * json_num.c - JSON numbers as jq has them: the text jq prints for a
 * double, and number literals that keep their exact text while a mapping
 * passes them through unchanged.
 *
 * A literal is "faithful" when printing its double gives back its value
 * (`42`, `0.1`, `1.50`, `1e2`): such numbers are plain doubles, as in jq.
 * The others (integers beyond 2^53 such as 12345678901234567890, more
 * than 17 significant digits, 1e400, 1e-400) also carry their literal,
 * which is what every serialiser of the engine writes, as jq 1.7 does for
 * unchanged literals. Computed values (`.n + 1`) are new doubles without
 * one. Where the literal lives:
 *   - libjq 1.7 (decNumber): jq's own literal numbers
 *     (jv_number_with_literal); jq then sees them exactly as jq 1.7 does
 *     (`tostring`, `==` and sorting by decimal value).
 *   - libjq 1.6, or 1.7 built without decNumber: an integer literal of
 *     at most 64 bits (|n| < 2^64, e.g. every 64-bit id) is written into
 *     fields a number jv never uses (pad_, offset, size: jv_number zeroes
 *     them, jv_copy and every container copy keep them, arithmetic makes
 *     a fresh jv_number). The tag holds n minus the double's integer value
 *     and n's low 16 bits as a check, so it needs no table and cannot
 *     outlive anything. jq itself sees the double (tostring gives jq
 *     1.6's 17 digits, == compares doubles); jv_identical, which libjq
 *     uses for path tracking, tells tagged copies apart as 1.7 tells
 *     literals apart. Other non-faithful literals stay doubles there.
 *
 * Owns nothing; no state.
 */
#include "json.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef JQ_FALLTHROUGH            /* defined by libjq 1.7's jv.h only */
/* Absent from a libjq 1.7 built without decNumber: weak references keep
 * the module loadable there (then the 1.6 way is used). */
extern jv jv_number_with_literal(const char *) __attribute__((weak));
extern const char *jv_number_get_literal(jv) __attribute__((weak));
#define HAVE_JQ_LITERALS (jv_number_with_literal != NULL \
                          && jv_number_get_literal != NULL)
#else
#define HAVE_JQ_LITERALS 0
#endif

#define TAG_MARK 0xB6            /* pad_ of a tagged number */
#define TWO64 18446744073709551616.0

/* {==================== decimal forms ==================== */

/* The value of a JSON number token as sign, significant digits and the
 * power of ten of the last one: value = digits * 10^x. Zero has
 * nsig == 0. `first`/`last` point into the token (they may enclose a
 * '.'). The exponent saturates far beyond any double. */
typedef struct decform {
  int neg;
  const char *first, *last;
  size_t nsig;
  long long x;
} decform_t;

static void decform(const char *tok, size_t n, decform_t *f)
{
  const char *p = tok, *end = tok + n, *m;
  long long pos = 0, e = 0, last_pos = 0;
  int eneg = 0;
  memset(f, 0, sizeof *f);
  if (p < end && *p == '-') {
    f->neg = 1;
    p++;
  }
  for (m = p; m < end && *m != 'e' && *m != 'E'; m++)
    if (*m == '.')
      break;
  pos = (long long)(m - p);      /* digits before the point (or the end) */
  for (; p < end && *p != 'e' && *p != 'E'; p++) {
    if (*p == '.')
      continue;
    pos--;
    if (*p != '0') {
      if (!f->first)
        f->first = p;
      f->last = p;
      last_pos = pos;
    }
    if (f->first)
      f->nsig++;
  }
  if (p < end) {                 /* exponent */
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      eneg = *p++ == '-';
    for (; p < end; p++)
      if (e < 1000000000LL)
        e = e * 10 + (*p - '0');
  }
  if (!f->first) {
    f->nsig = 0;
    return;
  }
  /* digits after the last non-zero one were counted: drop them */
  {
    const char *q;
    size_t trailing = 0;
    for (q = f->last + 1; q < end && *q != 'e' && *q != 'E'; q++)
      if (*q != '.')
        trailing++;
    f->nsig -= trailing;
  }
  f->x = last_pos + (eneg ? -e : e);
}

/* Do two forms have the same value? */
static int decform_equal(const decform_t *a, const decform_t *b)
{
  const char *p, *q;
  if (a->nsig != b->nsig)
    return 0;
  if (a->nsig == 0)
    return 1;                    /* 0 == -0, as jq has it */
  if (a->neg != b->neg || a->x != b->x)
    return 0;
  for (p = a->first, q = b->first; p <= a->last && q <= b->last; p++, q++) {
    if (*p == '.')
      p++;
    if (*q == '.')
      q++;
    if (*p != *q)
      return 0;
  }
  return 1;
}

/* }==================== */

/* {==================== printing doubles ==================== */

/* Digits of |i| (i != 0) right-aligned ending at end; returns the start. */
static char *utoa_rev(unsigned long long i, char *end)
{
  do {
    *--end = (char)('0' + i % 10);
    i /= 10;
  } while (i);
  return end;
}

/* The shortest digits that give back d (d finite, non-zero): digits
 * without trailing zeros into dig (NUL-terminated), and the decimal
 * point position (value = 0.dig * 10^decpt), as libjq's dtoa mode 0. */
static void shortest(double d, char dig[24], int *decpt)
{
  char tmp[40], *q;
  int prec, k = 0, e;
  /* A normal double's shortest form has 15 digits or fewer exactly when
   * its 15-digit rounding gives it back (DBL_DIG); a subnormal has fewer
   * bits, so its search starts at one digit. */
  for (prec = fpclassify(d) == FP_SUBNORMAL ? 0 : 14; prec <= 16; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec, fabs(d));
    if (prec == 16 || strtod(tmp, NULL) == fabs(d))
      break;
  }
  for (q = tmp; *q && *q != 'e'; q++)
    if (*q != '.')
      dig[k++] = *q;
  while (k > 1 && dig[k - 1] == '0')
    k--;
  dig[k] = '\0';
  e = atoi(q + 1);
  *decpt = e + 1;
}

size_t oc_json_format_double(double d, char *out)
{
  char dig[24], *b = out, *s, tmp[24];
  int decpt, ndig, i;
  if (isnan(d)) {
    memcpy(out, "null", 5);
    return 4;
  }
  if (isinf(d))
    d = d > 0 ? DBL_MAX : -DBL_MAX;   /* jq prints infinities so */
  if (d == 0) {
    return (size_t)(signbit(d) ? (memcpy(out, "-0", 3), 2)
                    : (memcpy(out, "0", 2), 1));
  }
  if (d == floor(d) && fabs(d) < 1e16) {     /* all digits exact */
    s = utoa_rev((unsigned long long)fabs(d), tmp + sizeof tmp);
    if (d < 0)
      *b++ = '-';
    memcpy(b, s, (size_t)(tmp + sizeof tmp - s));
    b += tmp + sizeof tmp - s;
    *b = '\0';
    return (size_t)(b - out);
  }
  shortest(d, dig, &decpt);
  ndig = (int)strlen(dig);
  if (d < 0)
    *b++ = '-';
  if (decpt <= -4 || decpt > ndig + 15) {    /* jvp_dtoa_fmt's rule */
    int x = decpt - 1;
    *b++ = dig[0];
    if (ndig > 1) {
      *b++ = '.';
      memcpy(b, dig + 1, (size_t)ndig - 1);
      b += ndig - 1;
    }
    b += sprintf(b, "e%c%02d", x < 0 ? '-' : '+', x < 0 ? -x : x);
  } else if (decpt <= 0) {
    *b++ = '0';
    *b++ = '.';
    for (i = decpt; i < 0; i++)
      *b++ = '0';
    memcpy(b, dig, (size_t)ndig);
    b += ndig;
  } else {
    for (i = 0; i < ndig; i++) {
      *b++ = dig[i];
      if (i + 1 == decpt && i + 1 < ndig)
        *b++ = '.';
    }
    for (i = ndig; i < decpt; i++)
      *b++ = '0';
  }
  *b = '\0';
  return (size_t)(b - out);
}

void oc_json_add_number(oc_buf_t *b, double d)
{
  char tmp[OC_NUM_BUF];
  oc_buf_add(b, tmp, oc_json_format_double(d, tmp));
}

/* }==================== */

/* {==================== literals ==================== */

int oc_json_number_faithful(double d, const char *tok, size_t n)
{
  char tmp[OC_NUM_BUF];
  decform_t a, b;
  size_t i;
  if (n <= 15 && (fpclassify(d) == FP_NORMAL)) {
    /* at most 15 significant digits: they survive a double (DBL_DIG) */
    return 1;
  }
  if (d == 0) {
    for (i = 0; i < n && tok[i] != 'e' && tok[i] != 'E'; i++)
      if (tok[i] >= '1' && tok[i] <= '9')
        return 0;                /* underflow */
    return 1;
  }
  if (isinf(d) || isnan(d))
    return 0;
  decform(tok, n, &a);
  if (a.nsig > 17)
    return 0;
  if (a.nsig <= 15 && fpclassify(d) == FP_NORMAL)
    return 1;
  decform(tmp, oc_json_format_double(d, tmp), &b);
  return decform_equal(&a, &b);
}

/* An integer token |n| < 2^64 as its magnitude; -1 if it is not one. */
static int token_u64(const char *tok, size_t n, unsigned long long *out)
{
  unsigned long long u = 0;
  size_t i = tok[0] == '-';
  if (n - i > 20 || n == i)
    return -1;
  for (; i < n; i++) {
    unsigned d;
    if (tok[i] < '0' || tok[i] > '9')
      return -1;
    d = (unsigned)(tok[i] - '0');
    if (u > (~0ULL - d) / 10)
      return -1;
    u = u * 10 + d;
  }
  *out = u;
  return 0;
}

/* The integer value of |d| (an integer double <= 2^64) modulo 2^64. */
static unsigned long long double_u64(double d)
{
  d = fabs(d);
  return d >= TWO64 ? 0 : (unsigned long long)d;
}

static jv tag_integer(double d, const char *tok, size_t n)
{
  unsigned long long u;
  long long delta;
  jv v = jv_number(d);
  if (token_u64(tok, n, &u) || fabs(d) > TWO64)
    return v;
  delta = (long long)(u - double_u64(d));      /* |delta| <= 2^10 */
  v.pad_ = TAG_MARK;
  v.size = (int)delta;
  v.offset = (unsigned short)(u & 0xffff);
  return v;
}

/* The integer a tagged number carries, as text into out; 0 if none. */
static size_t tagged_text(jv v, char *out)
{
  unsigned long long u;
  double d;
  char tmp[24], *s;
  size_t k = 0;
  if (v.pad_ != TAG_MARK)
    return 0;
  d = jv_number_value(v);
  if (d != floor(d) || fabs(d) > TWO64)
    return 0;
  u = double_u64(d) + (unsigned long long)(long long)v.size;
  if ((u & 0xffff) != v.offset)
    return 0;                    /* not our tag */
  if (d < 0)
    out[k++] = '-';
  s = utoa_rev(u, tmp + sizeof tmp);
  memcpy(out + k, s, (size_t)(tmp + sizeof tmp - s));
  k += (size_t)(tmp + sizeof tmp - s);
  out[k] = '\0';
  return k;
}

jv oc_json_number_jv(double d, const char *tok, size_t n)
{
  if (oc_json_number_faithful(d, tok, n))
    return jv_number(d);
#ifdef JQ_FALLTHROUGH
  if (HAVE_JQ_LITERALS) {
    char small[64], *lit = n < sizeof small ? small : malloc(n + 1);
    jv v;
    if (lit) {
      memcpy(lit, tok, n);
      lit[n] = '\0';
      v = jv_number_with_literal(lit);
      if (lit != small)
        free(lit);
      if (jv_is_valid(v))
        return v;
      jv_free(v);
    }
  }
#endif
  return tag_integer(d, tok, n);
}

int oc_json_is_null(jv v)
{
  jv_kind k = jv_get_kind(v);
  return k == JV_KIND_NULL || (k == JV_KIND_NUMBER && isnan(jv_number_value(v)));
}

int oc_json_jq_literals(void)
{
  return HAVE_JQ_LITERALS;
}

const char *oc_json_number_literal(jv v, char *buf)
{
  if (jv_get_kind(v) != JV_KIND_NUMBER)
    return NULL;
#ifdef JQ_FALLTHROUGH
  if (HAVE_JQ_LITERALS) {
    const char *lit = jv_number_get_literal(v);
    if (lit)
      return lit;
  }
#endif
  return tagged_text(v, buf) ? buf : NULL;
}

/* Canonical text of a non-faithful literal: its value, spelled one way
 * (plain digits for integers, else d.ddde±x). */
static void add_canonical(oc_buf_t *b, const char *lit)
{
  decform_t f;
  const char *p;
  long long x;
  decform(lit, strlen(lit), &f);
  if (f.nsig == 0) {
    oc_buf_addc(b, '0');
    return;
  }
  if (f.neg)
    oc_buf_addc(b, '-');
  if (f.x >= 0 && f.x <= 64) {
    for (p = f.first; p <= f.last; p++)
      if (*p != '.')
        oc_buf_addc(b, *p);
    for (x = 0; x < f.x; x++)
      oc_buf_addc(b, '0');
    return;
  }
  for (p = f.first; p <= f.last; p++) {
    if (*p == '.')
      continue;
    oc_buf_addc(b, *p);
    if (p == f.first && f.nsig > 1)
      oc_buf_addc(b, '.');
  }
  oc_buf_printf(b, "e%lld", f.x + (long long)f.nsig - 1);
}

/* A literal is written only where the double would change its value:
 * jq 1.7 also keeps the spelling of its program's constants (1.50, 1E+3),
 * which would make the engine's output depend on the libjq version. */
void oc_json_add_jv_number(oc_buf_t *b, jv v, int canonical)
{
  char buf[OC_NUM_BUF];
  const char *lit = oc_json_number_literal(v, buf);
  double d = jv_number_value(v);
  if (lit && !isnan(d) && !oc_json_number_faithful(d, lit, strlen(lit))) {
    if (canonical)
      add_canonical(b, lit);
    else
      oc_buf_adds(b, lit);
    return;
  }
  if (canonical && d == 0)
    d = 0;                       /* -0 == 0 */
  oc_json_add_number(b, d);
}

/* }==================== */

/* {==================== exact numbers as text ==================== */

int oc_json_is_number(const char *s, size_t n)
{
  size_t i = 0;
  if (i < n && s[i] == '-')
    i++;
  if (i < n && s[i] == '0') {
    i++;
  } else if (i < n && s[i] >= '1' && s[i] <= '9') {
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
  } else {
    return 0;
  }
  if (i < n && s[i] == '.') {
    if (++i >= n || s[i] < '0' || s[i] > '9')
      return 0;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    if (++i < n && (s[i] == '+' || s[i] == '-'))
      i++;
    if (i >= n || s[i] < '0' || s[i] > '9')
      return 0;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
  }
  return i == n;
}

/* The next significant digit of f at *p (skipping '.'), '0' past the
 * last one. */
static char next_digit(const decform_t *f, const char **p)
{
  char c;
  if (!*p || *p > f->last)
    return '0';
  if (**p == '.')
    (*p)++;
  c = **p;
  (*p)++;
  return c;
}

int oc_json_number_cmp(const char *a, size_t an, const char *b, size_t bn)
{
  decform_t x, y;
  const char *p, *q;
  int sx, sy, r = 0;
  size_t i;
  decform(a, an, &x);
  decform(b, bn, &y);
  sx = x.nsig == 0 ? 0 : x.neg ? -1 : 1;
  sy = y.nsig == 0 ? 0 : y.neg ? -1 : 1;
  if (sx != sy || sx == 0)
    return (sx > sy) - (sx < sy);
  /* same sign, both non-zero: compare magnitudes */
  if (x.x + (long long)x.nsig != y.x + (long long)y.nsig) {
    r = x.x + (long long)x.nsig > y.x + (long long)y.nsig ? 1 : -1;
  } else {
    p = x.first;
    q = y.first;
    for (i = 0; i < x.nsig || i < y.nsig; i++) {
      char c = next_digit(&x, &p), d = next_digit(&y, &q);
      if (c != d) {
        r = c > d ? 1 : -1;
        break;
      }
    }
  }
  return sx * r;
}

/* }==================== */

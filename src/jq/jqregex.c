/*
 * jqregex.c - _match_impl for the prelude (see jqlib.h): jq 1.7.1's
 * f_match, reproduced (offsets and lengths in code points, capture objects
 * with their keys in jq's order, an empty match advancing the search by
 * one byte, names from Oniguruma's group table), so that libjq 1.6 (whose
 * own version loops or crashes on empty matches) and 1.7.1 give the same
 * answers. Searches run with Oniguruma's retry limit per call (a match
 * parameter of our own, not the library's global setting), a global match
 * stops as soon as the budget reports a breach, and its result may not
 * grow past the memory limit.
 *
 * Owns nothing beyond a call.
 */
#include "jqlib.h"

#include <oniguruma.h>
#include <string.h>

#define SEARCH_RETRY_LIMIT 100000000UL  /* Oniguruma backtracking per search */

typedef struct matcher {
  oc_jqlib_t *lib;
  regex_t *reg;
  OnigRegion *region;
  OnigMatchParam *param;
  const char *s, *end;
  size_t bytes;                         /* result size so far */
} matcher_t;

static int name_iter(const UChar *name, const UChar *name_end, int ngroups,
                     int *groups, regex_t *reg, void *arg)
{
  jv *caps = arg;
  int i;
  (void)reg;
  for (i = 0; i < ngroups; i++) {
    jv cap = jv_array_get(jv_copy(*caps), groups[i] - 1);
    if (jv_get_kind(cap) == JV_KIND_OBJECT) {
      cap = jv_object_set(cap, jv_string("name"), jv_string_sized(
                            (const char *)name, (int)(name_end - name)));
      *caps = jv_array_set(*caps, groups[i] - 1, cap);
    } else {
      jv_free(cap);
    }
  }
  return 0;
}

/* {offset, length, string} of bytes [b, e) as jq writes them. */
static jv span(const matcher_t *m, long b, long e)
{
  long off = oc_jqlib_codepoints(m->s, m->s + b);
  long len = oc_jqlib_codepoints(m->s + b, m->s + e);
  jv o = jv_object_set(jv_object(), jv_string("offset"),
                       jv_number((double)off));
  o = jv_object_set(o, jv_string("length"), jv_number((double)len));
  return jv_object_set(o, jv_string("string"),
                       jv_string_sized(m->s + b, (int)(e - b)));
}

static jv unmatched_capture(long off, int matched)
{
  jv c = jv_object_set(jv_object(), jv_string("offset"),
                       jv_number((double)off));
  c = jv_object_set(c, jv_string("string"),
                    matched ? jv_string("") : jv_null());
  c = jv_object_set(c, jv_string("length"), jv_number(0));
  return jv_object_set(c, jv_string("name"), jv_null());
}

/* The match object for the current region. */
static jv match_object(matcher_t *m)
{
  OnigRegion *r = m->region;
  jv out, caps = jv_array();
  int i;
  if (r->end[0] == r->beg[0]) {         /* empty match: captures empty */
    long off = oc_jqlib_codepoints(m->s, m->s + r->beg[0]);
    out = jv_object_set(jv_object(), jv_string("offset"),
                        jv_number((double)off));
    out = jv_object_set(out, jv_string("length"), jv_number(0));
    out = jv_object_set(out, jv_string("string"), jv_string(""));
    for (i = 1; i < r->num_regs; i++)
      caps = jv_array_append(caps, unmatched_capture(off, 1));
  } else {
    out = span(m, r->beg[0], r->end[0]);
    for (i = 1; i < r->num_regs; i++) {
      if (r->beg[i] == r->end[i]) {
        long off = r->beg[i] == -1 ? -1
                   : oc_jqlib_codepoints(m->s, m->s + r->beg[i]);
        caps = jv_array_append(caps, unmatched_capture(off, r->beg[i] != -1));
      } else {
        caps = jv_array_append(caps, jv_object_set(span(m, r->beg[i],
                                                        r->end[i]),
                                                   jv_string("name"),
                                                   jv_null()));
      }
    }
  }
  onig_foreach_name(m->reg, name_iter, &caps);
  return jv_object_set(out, jv_string("captures"), caps);
}

static jv regex_error(int code, OnigErrorInfo *info)
{
  UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
  onig_error_code_to_str(msg, code, info);
  return jv_invalid_with_msg(jv_string_fmt("Regex failure: %s",
                                           (const char *)msg));
}

/* Flags -> options (g sets *global); a message for a bad flag. */
static jv flags(jv mods, OnigOptionType *opt, int *global)
{
  const char *p;
  *opt = ONIG_OPTION_CAPTURE_GROUP;
  *global = 0;
  if (jv_get_kind(mods) == JV_KIND_NULL)
    return jv_true();
  if (jv_get_kind(mods) != JV_KIND_STRING)
    return oc_jqlib_type_error(mods, "is not a string");
  for (p = jv_string_value(mods); *p; p++) {
    switch (*p) {
    case 'g': *global = 1; break;
    case 'i': *opt |= ONIG_OPTION_IGNORECASE; break;
    case 'x': *opt |= ONIG_OPTION_EXTEND; break;
    case 'm': *opt |= ONIG_OPTION_MULTILINE; break;
    case 's': *opt |= ONIG_OPTION_SINGLELINE; break;
    case 'p': *opt |= ONIG_OPTION_MULTILINE | ONIG_OPTION_SINGLELINE; break;
    case 'l': *opt |= ONIG_OPTION_FIND_LONGEST; break;
    case 'n': *opt |= ONIG_OPTION_FIND_NOT_EMPTY; break;
    default:
      return jv_invalid_with_msg(jv_string_fmt("%s is not a valid modifier "
                                               "string",
                                               jv_string_value(mods)));
    }
  }
  return jv_true();
}

/* The search loop: every match (global) or the first. */
static jv search(matcher_t *m, int global, int test)
{
  const UChar *start = (const UChar *)m->s, *end = (const UChar *)m->end;
  jv result = test ? jv_false() : jv_array();
  do {
    int rc = onig_search_with_param(m->reg, (const UChar *)m->s, end, start,
                                    end, m->region, ONIG_OPTION_NONE,
                                    m->param);
    if (rc == ONIG_MISMATCH)
      break;
    if (rc < 0) {
      jv_free(result);
      return regex_error(rc, NULL);
    }
    if (test) {
      jv_free(result);
      return jv_true();
    }
    m->bytes += 200 + (size_t)(m->region->end[0] - m->region->beg[0])
                + (size_t)m->region->num_regs * 120;
    if (oc_jqlib_refuse(m->lib, m->bytes)
        || (m->lib->budget && oc_budget_breach(m->lib->budget))) {
      jv_free(result);
      return jv_null();
    }
    result = jv_array_append(result, match_object(m));
    if (m->region->end[0] == m->region->beg[0])
      start = (const UChar *)m->s + m->region->end[0] + 1;
    else
      start = (const UChar *)m->s + m->region->end[0];
    onig_region_free(m->region, 0);
  } while (global && start <= end);
  return result;
}

jv oc_jqlib_match(oc_jqlib_t *lib, jv input, jv re, jv mods, jv testmode)
{
  matcher_t m;
  OnigOptionType opt;
  OnigErrorInfo info;
  int global, rc;
  jv r;
  if (jv_get_kind(input) != JV_KIND_STRING)
    return oc_jqlib_type_error(input, "cannot be matched, as it is not a string");
  if (jv_get_kind(re) != JV_KIND_STRING)
    return oc_jqlib_type_error(re, "is not a string");
  r = flags(mods, &opt, &global);
  if (!jv_is_valid(r))
    return r;
  memset(&m, 0, sizeof m);
  m.lib = lib;
  m.s = jv_string_value(input);
  m.end = m.s + jv_string_length_bytes(jv_copy(input));
  rc = onig_new(&m.reg, (const UChar *)jv_string_value(re),
                (const UChar *)jv_string_value(re)
                + jv_string_length_bytes(jv_copy(re)), opt,
                ONIG_ENCODING_UTF8, ONIG_SYNTAX_PERL_NG, &info);
  if (rc != ONIG_NORMAL)
    return regex_error(rc, &info);
  m.region = onig_region_new();
  m.param = onig_new_match_param();
  if (!m.region || !m.param) {
    r = jv_invalid_with_msg(jv_string("Regex failure: out of memory"));
  } else {
    onig_initialize_match_param(m.param);
    onig_set_retry_limit_in_search_of_match_param(m.param,
                                                  SEARCH_RETRY_LIMIT);
    r = search(&m, global, jv_get_kind(testmode) == JV_KIND_TRUE);
  }
  if (m.param)
    onig_free_match_param(m.param);
  if (m.region)
    onig_region_free(m.region, 1);
  onig_free(m.reg);
  return r;
}

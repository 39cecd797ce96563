/*
 * ljson.c - Lua <-> JSON text and Lua <-> jq values.
 *
 * Lua values map to JSON as follows: tables with the array metatable, or
 * non-empty sequences, are arrays; other tables are objects with string
 * keys (an empty plain table is {}); ocean.null is null. Object keys are
 * written in byte order so that equal data gives equal text.
 * Numbers: on Lua 5.4 integers stay integers and floats stay floats in
 * text (2.0 is written "2.0"); jq keeps only doubles, so values that pass
 * through jq come back as integers when they are integral. A number that
 * a Lua number cannot hold exactly (12345678901234567890 anywhere, beyond
 * 2^53 on LuaJIT, 1e400) decodes to the nearest Lua number, or, when
 * asked, to an exact number: a userdata (OC_NUMBER_MT) holding its JSON
 * text, written back verbatim, carried into jq as a literal
 * (json_num.c). Lua 5.4 integers beyond 2^53 reach jq exactly too.
 * Infinities are written as jq prints them (+-DBL_MAX); NaN is refused.
 */
#include "lbind.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* {==================== shared helpers ==================== */

void oc_push_null(lua_State *L)
{
  lua_pushlightuserdata(L, NULL);
}

int oc_is_null(lua_State *L, int idx)
{
  return lua_type(L, idx) == LUA_TLIGHTUSERDATA
         && lua_touserdata(L, idx) == NULL;
}

void oc_set_array_mt(lua_State *L)
{
  luaL_getmetatable(L, OC_ARRAY_MT);
  lua_setmetatable(L, -2);
}

/* A path of keys/indexes for error messages ("$.a[2].b"). */
typedef struct path {
  struct { const char *k; size_t kn; long long i; } seg[OC_LUA_MAX_DEPTH + 1];
  int n;
  int base;                      /* levels above the value converted */
} path_t;

static void path_format(const path_t *p, char *out, size_t outlen)
{
  size_t k = (size_t)snprintf(out, outlen, "$");
  int i;
  for (i = 0; i < p->n && k < outlen; i++) {
    if (p->seg[i].k)
      k += (size_t)snprintf(out + k, outlen - k, ".%.*s",
                            (int)(p->seg[i].kn > 60 ? 60 : p->seg[i].kn),
                            p->seg[i].k);
    else
      k += (size_t)snprintf(out + k, outlen - k, "[%lld]", p->seg[i].i);
  }
}

static int path_fail(const path_t *p, char *err, size_t errlen,
                     const char *what)
{
  char where[200];
  path_format(p, where, sizeof where);
  snprintf(err, errlen, "%s at %s", what, where);
  return -1;
}

/* Classify the table at idx: returns its array length (>= 0) when it is
 * an array, -1 when it is an object, -2 when it mixes keys (err set). */
static long long table_kind(lua_State *L, int idx, const path_t *p,
                            char *err, size_t errlen)
{
  long long n = 0, max = 0;
  int has_string = 0, has_other = 0;
  if (lua_getmetatable(L, idx)) {
    luaL_getmetatable(L, OC_ARRAY_MT);
    if (lua_rawequal(L, -1, -2)) {
      lua_pop(L, 2);
      return (long long)lua_rawlen(L, idx);
    }
    lua_pop(L, 2);
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      has_string = 1;
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_Number d = lua_tonumber(L, -1);
      if (d >= 1 && d == floor(d) && d < 9.0e15) {
        n++;
        if ((long long)d > max)
          max = (long long)d;
      } else {
        has_other = 1;
      }
    } else {
      has_other = 1;
    }
  }
  if (!has_other && (!has_string || n == 0) && (n == 0 || max == n))
    return n > 0 ? n : -1;
  if (has_other || has_string)
    return path_fail(p, err, errlen, "table mixes array and object keys "
                     "(object keys must be strings)") - 1;
  return path_fail(p, err, errlen, "sparse array (use ocean.null for "
                   "holes)") - 1;
}

typedef struct keyref { const char *s; size_t n; } keyref_t;

static int keyref_cmp(const void *a, const void *b)
{
  const keyref_t *x = a, *y = b;
  size_t n = x->n < y->n ? x->n : y->n;
  int c = memcmp(x->s, y->s, n);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* Collect the string keys of the object at idx, sorted, in a userdata
 * left on the stack (so that no raising call can leak it). The strings
 * stay anchored by the table. NULL (with *n = 0) for an empty table. */
static keyref_t *sorted_keys(lua_State *L, int idx, size_t *n)
{
  size_t k = 0;
  keyref_t *keys;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    k++;
  }
  keys = lua_newuserdata(L, sizeof(keyref_t) * (k ? k : 1));
  k = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    keys[k].s = lua_tolstring(L, -1, &keys[k].n);
    k++;
  }
  qsort(keys, k, sizeof(keyref_t), keyref_cmp);
  *n = k;
  return k ? keys : NULL;
}

/* }==================== */

/* {==================== exact numbers ==================== */

/* An exact number: a full userdata holding a valid JSON number token. */
typedef struct lnum {
  size_t n;
  char text[1];                  /* n bytes and a NUL */
} lnum_t;

static void push_exact(lua_State *L, const char *tok, size_t n)
{
  lnum_t *x = lua_newuserdata(L, sizeof(lnum_t) + n);
  x->n = n;
  memcpy(x->text, tok, n);
  x->text[n] = '\0';
  luaL_setmetatable(L, OC_NUMBER_MT);
}

const char *oc_exact_number(lua_State *L, int idx, size_t *n)
{
  lnum_t *x = luaL_testudata(L, idx, OC_NUMBER_MT);
  if (!x)
    return NULL;
  if (n)
    *n = x->n;
  return x->text;
}

/* The JSON text of an exact number or a Lua number at idx (tmp is
 * scratch space); NULL for anything else. */
static const char *number_text(lua_State *L, int idx, char *tmp, size_t *n)
{
  const char *s = oc_exact_number(L, idx, n);
  if (s || lua_type(L, idx) != LUA_TNUMBER)
    return s;
#if OC_LUA_HAS_INTEGERS
  if (lua_isinteger(L, idx)) {
    *n = (size_t)snprintf(tmp, OC_NUM_BUF, LUA_INTEGER_FMT,
                          lua_tointeger(L, idx));
    return tmp;
  }
#endif
  *n = oc_json_format_double((double)lua_tonumber(L, idx), tmp);
  return tmp;
}

/* json_number(text) -> exact number | nil, err */
static int ljson_number(lua_State *L)
{
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  if (!oc_json_is_number(s, n)) {
    lua_pushnil(L);
    lua_pushliteral(L, "not a JSON number");
    return 2;
  }
  push_exact(L, s, n);
  return 1;
}

static int lnum_tostring(lua_State *L)
{
  size_t n;
  const char *s = oc_exact_number(L, 1, &n);
  lua_pushlstring(L, s ? s : "?", s ? n : 1);
  return 1;
}

/* Compare the two operands (exact numbers or Lua numbers) by value:
 * -1, 0, 1, or 2 when unordered (a NaN). Raises when one is neither. */
static int lnum_compare(lua_State *L)
{
  char ta[OC_NUM_BUF], tb[OC_NUM_BUF];
  size_t na = 0, nb = 0;
  const char *a = number_text(L, 1, ta, &na), *b = number_text(L, 2, tb, &nb);
  double x, y;
  if (!a || !b)
    return luaL_error(L, "attempt to compare an exact number with a %s",
                      luaL_typename(L, a ? 2 : 1));
  x = a == ta ? (double)lua_tonumber(L, 1) : 0;
  y = b == tb ? (double)lua_tonumber(L, 2) : 0;
  if (isnan(x) || isnan(y))
    return 2;
  if (isinf(x) || isinf(y)) {    /* a Lua infinity: compare as doubles */
    x = a == ta ? x : strtod(a, NULL);
    y = b == tb ? y : strtod(b, NULL);
    return (x > y) - (x < y);
  }
  return oc_json_number_cmp(a, na, b, nb);
}

static int lnum_eq(lua_State *L)
{
  lua_pushboolean(L, lnum_compare(L) == 0);
  return 1;
}

static int lnum_lt(lua_State *L)
{
  lua_pushboolean(L, lnum_compare(L) == -1);
  return 1;
}

static int lnum_le(lua_State *L)
{
  int c = lnum_compare(L);
  lua_pushboolean(L, c == -1 || c == 0);
  return 1;
}

static int lnum_concat(lua_State *L)
{
  int i;
  for (i = 1; i <= 2; i++) {
    size_t n;
    const char *s = oc_exact_number(L, i, &n);
    if (s)
      lua_pushlstring(L, s, n);
    else
      lua_pushvalue(L, i);
  }
  lua_concat(L, 2);
  return 1;
}

static const luaL_Reg lnum_meta[] = {
  {"__tostring", lnum_tostring},
  {"__eq", lnum_eq},
  {"__lt", lnum_lt},
  {"__le", lnum_le},
  {"__concat", lnum_concat},
  {NULL, NULL}
};

/* }==================== */

/* {==================== jv -> Lua ==================== */

static void push_number(lua_State *L, jv v, int exact)
{
  double d = jv_number_value(v);
  char buf[OC_NUM_BUF];
  const char *lit = oc_json_number_literal(v, buf);
  if (isnan(d)) {                /* jq writes NaN as null */
    oc_push_null(L);
    return;
  }
#if OC_LUA_HAS_INTEGERS
  /* an integer literal beyond 2^53 that a Lua integer holds */
  if (lit && lua_stringtonumber(L, lit)) {
    if (lua_isinteger(L, -1))
      return;
    lua_pop(L, 1);
  }
#endif
  if (lit && exact && !oc_json_number_faithful(d, lit, strlen(lit))) {
    push_exact(L, lit, strlen(lit));
    return;
  }
#if OC_LUA_HAS_INTEGERS
  if (d == floor(d) && d >= -9.2233720368547758e18
      && d < 9.2233720368547758e18) {
    lua_pushinteger(L, (lua_Integer)d);
    return;
  }
#endif
  lua_pushnumber(L, d);
}

void oc_push_jv(lua_State *L, jv v)
{
  oc_push_jv_ex(L, v, 0);
}

void oc_push_jv_ex(lua_State *L, jv v, int exact)
{
  int i, n;
  luaL_checkstack(L, 4, "JSON value nested too deeply");
  switch (jv_get_kind(v)) {
  case JV_KIND_INVALID:
  case JV_KIND_NULL: oc_push_null(L); break;
  case JV_KIND_TRUE: lua_pushboolean(L, 1); break;
  case JV_KIND_FALSE: lua_pushboolean(L, 0); break;
  case JV_KIND_NUMBER: push_number(L, v, exact); break;
  case JV_KIND_STRING:
    lua_pushlstring(L, jv_string_value(v),
                    (size_t)jv_string_length_bytes(jv_copy(v)));
    break;
  case JV_KIND_ARRAY:
    n = jv_array_length(jv_copy(v));
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
      jv e = jv_array_get(jv_copy(v), i);
      oc_push_jv_ex(L, e, exact);
      jv_free(e);
      lua_rawseti(L, -2, i + 1);
    }
    oc_set_array_mt(L);
    break;
  case JV_KIND_OBJECT:
    lua_createtable(L, 0, jv_object_length(jv_copy(v)));
    jv_object_foreach(v, k, val) {
      lua_pushlstring(L, jv_string_value(k),
                      (size_t)jv_string_length_bytes(jv_copy(k)));
      oc_push_jv_ex(L, val, exact);
      lua_rawset(L, -3);
      jv_free(k);
      jv_free(val);
    }
    break;
  }
}

/* }==================== */

/* {==================== Lua -> jv ==================== */

static jv to_jv(lua_State *L, int idx, oc_keycache_t *kc, int max_depth,
                path_t *p, char *err, size_t errlen);

static jv table_to_jv(lua_State *L, int idx, oc_keycache_t *kc,
                      int max_depth, path_t *p, char *err, size_t errlen)
{
  long long n = table_kind(L, idx, p, err, errlen), i;
  jv out;
  if (n < -1)
    return jv_invalid();
  if (n >= 0) {
    out = jv_array_sized((int)n);
    for (i = 1; i <= n; i++) {
      jv e;
      lua_rawgeti(L, idx, (lua_Integer)i);
      p->seg[p->n].k = NULL;
      p->seg[p->n++].i = i - 1;
      e = to_jv(L, lua_gettop(L), kc, max_depth, p, err, errlen);
      p->n--;
      lua_pop(L, 1);
      if (!jv_is_valid(e)) {
        jv_free(out);
        return e;
      }
      out = jv_array_append(out, e);
    }
    return out;
  }
  out = jv_object();
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t kn;
    const char *k = lua_tolstring(L, -2, &kn);
    jv e;
    p->seg[p->n].k = k;
    p->seg[p->n++].kn = kn;
    e = to_jv(L, lua_gettop(L), kc, max_depth, p, err, errlen);
    p->n--;
    lua_pop(L, 1);
    if (!jv_is_valid(e)) {
      lua_pop(L, 1);
      jv_free(out);
      return e;
    }
    out = jv_object_set(out, oc_keycache_get(kc, k, kn), e);
  }
  return out;
}

static jv to_jv(lua_State *L, int idx, oc_keycache_t *kc, int max_depth,
                path_t *p, char *err, size_t errlen)
{
  const char *s;
  size_t n;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: return jv_null();
  case LUA_TBOOLEAN: return jv_bool(lua_toboolean(L, idx));
  case LUA_TNUMBER: {
    lua_Number d = lua_tonumber(L, idx);
    if (isnan(d)) {
      path_fail(p, err, errlen, "cannot convert NaN to JSON");
      return jv_invalid();
    }
#if OC_LUA_HAS_INTEGERS
    if (lua_isinteger(L, idx)
        && (lua_tointeger(L, idx) > ((lua_Integer)1 << 53)
            || lua_tointeger(L, idx) < -((lua_Integer)1 << 53))) {
      char tmp[OC_NUM_BUF];
      int k = snprintf(tmp, sizeof tmp, LUA_INTEGER_FMT,
                       lua_tointeger(L, idx));
      return oc_json_number_jv(d, tmp, (size_t)k);
    }
#endif
    return jv_number(d);
  }
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &n);
    return jv_string_sized(s, (int)n);
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL)
      return jv_null();
    break;
  case LUA_TUSERDATA:
    if ((s = oc_exact_number(L, idx, &n)))
      return oc_json_number_jv(strtod(s, NULL), s, n);
    break;
  case LUA_TTABLE:
    if (p->base + p->n >= max_depth || p->n >= OC_LUA_MAX_DEPTH) {
      char what[80];
      snprintf(what, sizeof what, "nesting deeper than %d levels (or a "
               "cycle)", max_depth);
      path_fail(p, err, errlen, what);
      return jv_invalid();
    }
    luaL_checkstack(L, 6, "JSON value nested too deeply");
    return table_to_jv(L, idx, kc, max_depth, p, err, errlen);
  default:
    break;
  }
  {
    char what[80];
    snprintf(what, sizeof what, "cannot convert a %s to JSON",
             luaL_typename(L, idx));
    path_fail(p, err, errlen, what);
  }
  return jv_invalid();
}

jv oc_to_jv(lua_State *L, int idx, oc_keycache_t *kc, int max_depth,
            char *err, size_t errlen)
{
  return oc_to_jv_at(L, idx, kc, max_depth, 0, err, errlen);
}

jv oc_to_jv_at(lua_State *L, int idx, oc_keycache_t *kc, int max_depth,
               int depth, char *err, size_t errlen)
{
  path_t *p = malloc(sizeof(path_t));
  jv v;
  if (!p) {
    snprintf(err, errlen, "out of memory");
    return jv_invalid();
  }
  p->n = 0;
  p->base = depth;
  if (max_depth <= 0 || max_depth > OC_LUA_MAX_DEPTH)
    max_depth = OC_LUA_MAX_DEPTH;
  v = to_jv(L, lua_absindex(L, idx), kc, max_depth, p, err, errlen);
  free(p);
  return v;
}

/* }==================== */

/* {==================== Lua -> JSON text ==================== */

typedef struct encoder {
  oc_buf_t out;
  path_t path;
  char err[OC_ERR_SIZE];
} encoder_t;

static void add_lua_number(encoder_t *e, lua_State *L, int idx)
{
#if OC_LUA_HAS_INTEGERS
  char tmp[40];
  if (lua_isinteger(L, idx)) {
    snprintf(tmp, sizeof tmp, LUA_INTEGER_FMT, lua_tointeger(L, idx));
    oc_buf_adds(&e->out, tmp);
    return;
  }
  {
    lua_Number d = lua_tonumber(L, idx);
    if (d == floor(d) && fabs(d) < 1e16) {   /* keep the float visible */
      snprintf(tmp, sizeof tmp, "%.1f", (double)d);
      oc_buf_adds(&e->out, tmp);
      return;
    }
  }
#endif
  oc_json_add_number(&e->out, (double)lua_tonumber(L, idx));
}

static int encode(encoder_t *e, lua_State *L, int idx);

static int encode_table(encoder_t *e, lua_State *L, int idx)
{
  long long n = table_kind(L, idx, &e->path, e->err, sizeof e->err), i;
  size_t nk, k;
  keyref_t *keys;
  int rc = 0;
  if (n < -1)
    return -1;
  if (n >= 0) {
    oc_buf_addc(&e->out, '[');
    for (i = 1; i <= n && !rc; i++) {
      if (i > 1)
        oc_buf_addc(&e->out, ',');
      lua_rawgeti(L, idx, (lua_Integer)i);
      e->path.seg[e->path.n].k = NULL;
      e->path.seg[e->path.n++].i = i - 1;
      rc = encode(e, L, lua_gettop(L));
      e->path.n--;
      lua_pop(L, 1);
    }
    oc_buf_addc(&e->out, ']');
    return rc;
  }
  keys = sorted_keys(L, idx, &nk);   /* pushed: popped below */
  oc_buf_addc(&e->out, '{');
  for (k = 0; k < nk && !rc; k++) {
    if (k)
      oc_buf_addc(&e->out, ',');
    oc_buf_add_json_string(&e->out, keys[k].s, keys[k].n);
    oc_buf_addc(&e->out, ':');
    lua_pushlstring(L, keys[k].s, keys[k].n);
    lua_rawget(L, idx);
    e->path.seg[e->path.n].k = keys[k].s;
    e->path.seg[e->path.n++].kn = keys[k].n;
    rc = encode(e, L, lua_gettop(L));
    e->path.n--;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  oc_buf_addc(&e->out, '}');
  return rc;
}

static int encode(encoder_t *e, lua_State *L, int idx)
{
  const char *s;
  size_t n;
  char what[80];
  switch (lua_type(L, idx)) {
  case LUA_TNIL: oc_buf_adds(&e->out, "null"); return 0;
  case LUA_TBOOLEAN:
    oc_buf_adds(&e->out, lua_toboolean(L, idx) ? "true" : "false");
    return 0;
  case LUA_TNUMBER: {
    lua_Number d = lua_tonumber(L, idx);
    if (isnan(d))
      return path_fail(&e->path, e->err, sizeof e->err, "cannot encode NaN");
    add_lua_number(e, L, idx);
    return 0;
  }
  case LUA_TUSERDATA:
    if ((s = oc_exact_number(L, idx, &n))) {
      oc_buf_add(&e->out, s, n);
      return 0;
    }
    break;
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &n);
    oc_buf_add_json_string(&e->out, s, n);
    return 0;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) {
      oc_buf_adds(&e->out, "null");
      return 0;
    }
    break;
  case LUA_TTABLE:
    if (e->path.n >= OC_LUA_MAX_DEPTH)
      return path_fail(&e->path, e->err, sizeof e->err, "nesting deeper "
                       "than 256 levels (or a cycle)");
    luaL_checkstack(L, 6, "JSON value nested too deeply");
    return encode_table(e, L, idx);
  default:
    break;
  }
  snprintf(what, sizeof what, "cannot encode a %s", luaL_typename(L, idx));
  return path_fail(&e->path, e->err, sizeof e->err, what);
}

static int encoder_gc(lua_State *L)
{
  oc_buf_free(&((encoder_t *)lua_touserdata(L, 1))->out);
  return 0;
}

/* json_encode(value) -> text | nil, err */
static int ljson_encode(lua_State *L)
{
  encoder_t *e;
  int rc;
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  e = lua_newuserdata(L, sizeof(encoder_t));   /* freed by the GC, */
  memset(e, 0, sizeof *e);                     /* its buffer too */
  if (luaL_newmetatable(L, "ocean.json.encoder")) {
    lua_pushcfunction(L, encoder_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  rc = encode(e, L, 1);
  if (rc == 0 && e->out.oom) {
    snprintf(e->err, sizeof e->err, "out of memory");
    rc = -1;
  }
  if (rc) {
    oc_buf_free(&e->out);
    lua_pushnil(L);
    lua_pushfstring(L, "json encode: %s", e->err);
    return 2;
  }
  lua_pushlstring(L, e->out.p ? e->out.p : "", e->out.n);
  oc_buf_free(&e->out);
  return 1;
}

/* }==================== */

/* {==================== JSON text -> Lua ==================== */

typedef struct lbuilder {
  lua_State *L;
  long long *index;              /* next array index per depth */
  int depth, cap;
  int exact;                     /* exact numbers where Lua's are not */
  oc_json_parser_t *parser;
} lbuilder_t;

static int lb_add(lbuilder_t *b)
{
  lua_State *L = b->L;
  if (b->depth == 0)
    return 0;                    /* the result stays on the stack */
  if (b->index[b->depth] >= 0) {
    lua_rawseti(L, -2, (lua_Integer)++b->index[b->depth]);
  } else {
    lua_rawset(L, -3);           /* key is below the value */
  }
  return 0;
}

static int lb_push(lbuilder_t *b, int is_array)
{
  if (!lua_checkstack(b->L, 4))
    return -1;
  if (b->depth + 1 >= b->cap) {
    int cap = b->cap ? b->cap * 2 : 16;
    long long *ni = realloc(b->index, sizeof(long long) * (size_t)cap);
    if (!ni)
      return -1;
    b->index = ni;
    b->cap = cap;
  }
  b->depth++;
  b->index[b->depth] = is_array ? 0 : -1;
  lua_newtable(b->L);
  if (is_array)
    oc_set_array_mt(b->L);
  return 0;
}

static int lb_null(void *ud)
{
  oc_push_null(((lbuilder_t *)ud)->L);
  return lb_add(ud);
}
static int lb_bool(void *ud, int v)
{
  lua_pushboolean(((lbuilder_t *)ud)->L, v);
  return lb_add(ud);
}
static int lb_number(void *ud, double d, const char *tok, size_t n)
{
  lbuilder_t *b = ud;
#if OC_LUA_HAS_INTEGERS
  if (n < 21 && !memchr(tok, '.', n) && !memchr(tok, 'e', n)
      && !memchr(tok, 'E', n)) {
    char tmp[24];
    memcpy(tmp, tok, n);
    tmp[n] = '\0';
    if (lua_stringtonumber(b->L, tmp) == n + 1) {
      if (lua_isinteger(b->L, -1) || !b->exact
          || oc_json_number_faithful(d, tok, n))
        return lb_add(b);
      lua_pop(b->L, 1);          /* beyond a Lua integer */
    }
  }
#endif
  if (b->exact && !oc_json_number_faithful(d, tok, n))
    push_exact(b->L, tok, n);
  else
    lua_pushnumber(b->L, d);
  return lb_add(b);
}
static int lb_string(void *ud, const char *s, size_t n)
{
  lua_pushlstring(((lbuilder_t *)ud)->L, s, n);
  return lb_add(ud);
}
static int lb_key(void *ud, const char *s, size_t n)
{
  lua_pushlstring(((lbuilder_t *)ud)->L, s, n);
  return 0;
}
static int lb_begin_object(void *ud) { return lb_push(ud, 0); }
static int lb_begin_array(void *ud) { return lb_push(ud, 1); }
static int lb_end(void *ud)
{
  lbuilder_t *b = ud;
  b->depth--;
  return lb_add(b);
}

static const oc_json_sax_t lb_sax = {
  lb_null, lb_bool, lb_number, lb_string, lb_key,
  lb_begin_object, lb_end, lb_begin_array, lb_end
};

/* json_decode(text [, max_depth [, exact]]) -> value | nil, err
 * exact: numbers a Lua number cannot hold exactly become exact numbers. */
static int ljson_decode(lua_State *L)
{
  size_t n, used;
  const char *s = luaL_checklstring(L, 1, &n);
  int max_depth = (int)luaL_optinteger(L, 2, OC_JSON_MAX_DEPTH);
  int exact = lua_toboolean(L, 3);
  oc_json_parser_t *p;
  lbuilder_t b;
  int rc, top;
  if (max_depth > OC_LUA_MAX_DEPTH)
    max_depth = OC_LUA_MAX_DEPTH;
  lua_settop(L, 3);
  p = lua_newuserdata(L, sizeof(oc_json_parser_t));  /* GC owns it */
  top = lua_gettop(L);
  memset(&b, 0, sizeof b);
  b.L = L;
  b.exact = exact;
  oc_json_parser_init(p, &lb_sax, &b, max_depth);
  b.parser = p;
  rc = oc_json_parse_value(p, s, n, &used);
  if (rc == 0 && used != n) {
    p->s = s + used;
    snprintf(p->err, sizeof p->err, "invalid JSON: unexpected data after "
             "the value at byte %zu", used + 1);
    rc = -1;
  }
  free(b.index);
  oc_json_parser_free(p);
  if (rc) {
    lua_settop(L, top);
    lua_pushnil(L);
    lua_pushstring(L, p->err[0] ? p->err : "invalid JSON");
    return 2;
  }
  return 1;
}

/* }==================== */

/* json_canonical(value) -> text: sorted keys, null members dropped, via jv
 * (so numbers are written as jq sees them). Used for equality in tests and
 * for content hashes. */
static int ljson_canonical(lua_State *L)
{
  char err[OC_ERR_SIZE];
  jv v = oc_to_jv(L, 1, NULL, OC_LUA_MAX_DEPTH, err, sizeof err);
  oc_buf_t b = OC_BUF_INIT;
  if (!jv_is_valid(v)) {
    jv_free(v);
    lua_pushnil(L);
    lua_pushfstring(L, "json canonical: %s", err);
    return 2;
  }
  oc_json_dump(v, &b, OC_DUMP_CANONICAL);
  jv_free(v);
  lua_pushlstring(L, b.p ? b.p : "", b.n);
  oc_buf_free(&b);
  return 1;
}

/* json_via_jq(value) -> value: Lua -> jv -> Lua (round-trip check). */
static int ljson_via_jq(lua_State *L)
{
  char err[OC_ERR_SIZE];
  jv v = oc_to_jv(L, 1, NULL, OC_LUA_MAX_DEPTH, err, sizeof err);
  if (!jv_is_valid(v)) {
    jv_free(v);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  oc_push_jv(L, v);
  jv_free(v);
  return 1;
}

/* json_via_jq_text(text) -> text: JSON -> jv -> JSON (engine parser). */
static int ljson_via_jq_text(lua_State *L)
{
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char err[OC_ERR_SIZE];
  oc_buf_t b = OC_BUF_INIT;
  jv v = oc_json_to_jv(s, n, OC_JSON_MAX_DEPTH, NULL, err, sizeof err);
  if (!jv_is_valid(v)) {
    jv_free(v);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  oc_json_dump(v, &b, OC_DUMP_SORT_KEYS);
  jv_free(v);
  lua_pushlstring(L, b.p ? b.p : "", b.n);
  oc_buf_free(&b);
  return 1;
}

static int array_tostring(lua_State *L)
{
  lua_pushfstring(L, "json array: %p", lua_topointer(L, 1));
  return 1;
}

static const luaL_Reg json_funcs[] = {
  {"json_encode", ljson_encode},
  {"json_decode", ljson_decode},
  {"json_canonical", ljson_canonical},
  {"json_via_jq", ljson_via_jq},
  {"json_via_jq_text", ljson_via_jq_text},
  {"json_number", ljson_number},
  {NULL, NULL}
};

void oc_open_json(lua_State *L)
{
  if (luaL_newmetatable(L, OC_ARRAY_MT)) {
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__jsontype");
    lua_pushcfunction(L, array_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setfield(L, -2, "json_array_mt");
  if (luaL_newmetatable(L, OC_NUMBER_MT)) {
    luaL_setfuncs(L, lnum_meta, 0);
    lua_pushliteral(L, "number");
    lua_setfield(L, -2, "__jsontype");
    lua_pushliteral(L, OC_NUMBER_MT);
    lua_setfield(L, -2, "__name");
  }
  lua_setfield(L, -2, "json_number_mt");
  lua_pushboolean(L, oc_json_jq_literals());
  lua_setfield(L, -2, "jq_literal_numbers");
  oc_push_null(L);
  lua_setfield(L, -2, "null");
  luaL_setfuncs(L, json_funcs, 0);
}

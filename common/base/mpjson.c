/* mpjson.c: msgpack <-> jansson for the stream's maps (header, records, attrs).
 * jansson keeps insertion order, so a map read and written again keeps its key order
 * and a filter's output is byte-identical for identical input. */
#include "mpjson.h"
#include "util.h"

#include <string.h>

#define MAX_DEPTH 32

static json_t *conv(const msgpack_object *o, int depth)
{
	json_t *v = NULL;
	if (depth > MAX_DEPTH) {
		lm_seterr("map nested deeper than %d levels", MAX_DEPTH);
		return NULL;
	}
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: return json_null();
	case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)INT64_MAX) {
			lm_seterr("integer %llu out of range", (unsigned long long)o->via.u64);
			return NULL;
		}
		return json_integer((json_int_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		v = json_real(o->via.f64);
		if (!v) /* jansson refuses NaN and Inf */
			lm_seterr("non-finite number in a map");
		return v;
	case MSGPACK_OBJECT_STR:
		v = json_stringn(o->via.str.size ? o->via.str.ptr : "", o->via.str.size);
		if (!v)
			lm_seterr("string is not valid UTF-8");
		return v;
	case MSGPACK_OBJECT_ARRAY:
		v = json_array();
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			json_t *e = conv(&o->via.array.ptr[i], depth + 1);
			if (!e) {
				json_decref(v);
				return NULL;
			}
			json_array_append_new(v, e);
		}
		return v;
	case MSGPACK_OBJECT_MAP:
		v = json_object();
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];
			char key[LM_MPJSON_MAX_KEY + 1];
			json_t *e;
			if (kv->key.type != MSGPACK_OBJECT_STR || kv->key.via.str.size > LM_MPJSON_MAX_KEY ||
			    (kv->key.via.str.size && memchr(kv->key.via.str.ptr, 0, kv->key.via.str.size))) {
				lm_seterr("map key is not a short string");
				json_decref(v);
				return NULL;
			}
			/* an empty string may come with a NULL pointer: no memcpy from it */
			if (kv->key.via.str.size)
				memcpy(key, kv->key.via.str.ptr, kv->key.via.str.size);
			key[kv->key.via.str.size] = '\0';
			if (json_object_get(v, key)) {
				lm_seterr("duplicate key \"%s\"", key);
				json_decref(v);
				return NULL;
			}
			e = conv(&kv->val, depth + 1);
			if (!e || json_object_set_new(v, key, e) < 0) {
				if (e)
					lm_seterr("map key is not valid UTF-8");
				json_decref(v);
				return NULL;
			}
		}
		return v;
	default:
		lm_seterr("unexpected binary or extension object in a map");
		return NULL;
	}
}

json_t *lm_msgpack_to_json(const msgpack_object *o)
{
	return conv(o, 0);
}

int lm_pack_json(msgpack_packer *pk, json_t *v)
{
	const char *key;
	json_t *e;
	size_t i;
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		msgpack_pack_map(pk, json_object_size(v));
		json_object_foreach(v, key, e) {
			msgpack_pack_str_with_body(pk, key, strlen(key));
			if (lm_pack_json(pk, e) < 0)
				return -1;
		}
		return 0;
	case JSON_ARRAY:
		msgpack_pack_array(pk, json_array_size(v));
		json_array_foreach(v, i, e)
			if (lm_pack_json(pk, e) < 0)
				return -1;
		return 0;
	case JSON_STRING:
		return msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
	case JSON_INTEGER: return msgpack_pack_int64(pk, json_integer_value(v));
	case JSON_REAL: return msgpack_pack_double(pk, json_real_value(v));
	case JSON_TRUE: return msgpack_pack_true(pk);
	case JSON_FALSE: return msgpack_pack_false(pk);
	case JSON_NULL: return msgpack_pack_nil(pk);
	}
	return lm_seterr("unknown JSON type");
}

/* Length of the one msgpack object at p[0..len) without decoding it: 0 = need more
 * bytes, -1 = malformed or larger than max. Run before msgpack_unpack_next so a record
 * that claims a billion-entry array in a few bytes is refused before msgpack-c sizes an
 * allocation from that claim: once the whole object is buffered, every count it holds
 * is bounded by its byte length. */
long long lm_msgpack_skim(const unsigned char *p, size_t len, size_t max)
{
	size_t pos = 0, need = 1;
	while (need > 0) {
		size_t h, body = 0, kids = 0;
		unsigned b;
		if (pos >= len)
			return pos >= max ? -1 : 0;
		b = p[pos];
#define BE(n) ({ uint64_t x_ = 0; for (int i_ = 1; i_ <= (n); i_++) x_ = x_ << 8 | p[pos + i_]; x_; })
		if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) h = 1;
		else if (b >= 0x80 && b <= 0x8f) h = 1, kids = 2 * (b & 0x0f);
		else if (b >= 0x90 && b <= 0x9f) h = 1, kids = b & 0x0f;
		else if (b >= 0xa0 && b <= 0xbf) h = 1, body = b & 0x1f;
		else {
			static const unsigned char hsz[] = {
				/* c4 bin8 */ 2, 3, 5, /* c7 ext8 */ 3, 4, 6, /* ca f32 */ 5, 9,
				/* cc u8 */ 2, 3, 5, 9, /* d0 i8 */ 2, 3, 5, 9,
				/* d4 fixext */ 3, 4, 6, 10, 18, /* d9 str8 */ 2, 3, 5,
				/* dc array16 */ 3, 5, /* de map16 */ 3, 5 };
			if (b == 0xc1)
				return -1;
			h = hsz[b - 0xc4];
			if (pos + h > len)
				return pos + h > max ? -1 : 0;
			switch (b) {
			case 0xc4: case 0xd9: body = BE(1); break;
			case 0xc5: case 0xda: body = BE(2); break;
			case 0xc6: case 0xdb: body = BE(4); break;
			case 0xc7: body = BE(1); break;
			case 0xc8: body = BE(2); break;
			case 0xc9: body = BE(4); break;
			case 0xdc: kids = BE(2); break;
			case 0xdd: kids = BE(4); break;
			case 0xde: kids = 2 * BE(2); break;
			case 0xdf: kids = 2 * BE(4); break;
			default: break;
			}
		}
#undef BE
		if (body > max || pos + h + body > max)
			return -1;
		pos += h + body;
		need = need - 1 + kids;
		if (need > max) /* each pending object needs at least one more byte */
			return -1;
	}
	return pos <= len ? (long long)pos : 0;
}

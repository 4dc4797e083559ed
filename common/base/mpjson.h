/* mpjson.h: msgpack maps <-> jansson values (the stream's maps live as jansson objects) */
#ifndef LM_MPJSON_H
#define LM_MPJSON_H

#include <jansson.h>
#include <msgpack.h>
#include <stddef.h>

#define LM_MPJSON_MAX_KEY 255

/* new reference or NULL + error (bin/ext, non-string keys, duplicate keys, bad UTF-8) */
json_t *lm_msgpack_to_json(const msgpack_object *o);
int lm_pack_json(msgpack_packer *pk, json_t *v);
/* byte length of one complete msgpack object in p[0..len), 0 if more bytes are needed,
 * -1 if malformed or longer than max */
long long lm_msgpack_skim(const unsigned char *p, size_t len, size_t max);

#endif

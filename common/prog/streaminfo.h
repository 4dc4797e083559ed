/* streaminfo.h: what lm-info prints of a stream: its header, tensors, blobs and totals as
 * a table or JSON, or a text's token ids by its tokenizer. */
#ifndef LM_STREAMINFO_H
#define LM_STREAMINFO_H

#include "stream.h"

/* After the header h of rd: every record read and checked, then the description on
 * stdout (a table, or one JSON object with as_json). A model that does not fit its header
 * is described all the same, with a warning per problem; a stream that cannot be read
 * ends the program (die). */
void lm_info_describe(struct lm_reader *rd, const struct lm_header *h, int as_json);
/* After the header of rd: the token ids of text (no BOS) by the stream's tokenizer blobs,
 * on one line of stdout; dies when the stream carries none. */
void lm_info_tokenize(struct lm_reader *rd, const char *text);

#endif

/* hfexport.h: an lm-stream written as a Hugging Face OPT folder that transformers'
 * from_pretrained loads (lm-export). */
#ifndef LM_HFEXPORT_H
#define LM_HFEXPORT_H

#include "stream.h"

/* the stream rd (header not read yet) as the folder dir: config.json, model.safetensors
 * (packed types dequantized to f16, the exit policy left out) and the tokenizer files it
 * carries. The stream is read and checked whole before any file is written; a problem
 * ends the program (die) with one line naming the input or the file. */
void lm_hf_export(struct lm_reader *rd, const char *dir);

#endif

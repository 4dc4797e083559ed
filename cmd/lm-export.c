/* lm-export: lm-stream -> a Hugging Face folder that transformers' from_pretrained loads
 * (the work is in common/prog/hfexport.c) */
#include "cli.h"
#include "hfexport.h"
#include "util.h"

#include <getopt.h>

static const char usage_text[] =
	"usage: lm-export -o DIR [FILE]\n"
	"Write the lm-stream read from FILE or standard input as a Hugging Face OPT folder:\n"
	"config.json, model.safetensors, and the tokenizer files the stream carries.\n"
	"  -o, --output DIR   the folder to write (created if missing; files replaced)\n"
	"  -h, --help         show this help\n"
	"  -V, --version      show the version\n";

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"output", required_argument, 0, 'o'}, LM_CLI_HELPOPTS, {0, 0, 0, 0}};
	struct lm_cli_flags cf = LM_CLI_FLAGS_INIT;  /* -o: the folder */
	struct lm_reader *rd;
	int c;

	lm_prog_init(argc, argv);
	while ((c = getopt_long(argc, argv, "o:hV", opts, NULL)) != -1)
		lm_cli_flag(c, &cf, "lm-export", usage_text);
	if (!cf.out || argc - optind > 1)
		lm_usage(usage_text, 2);
	rd = lm_in_open(optind < argc ? argv[optind] : NULL);
	lm_hf_export(rd, cf.out);
	lm_reader_close(rd);
	return 0;
}

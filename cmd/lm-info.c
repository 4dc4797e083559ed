/* lm-info: describe an lm-stream (a table or JSON on stdout); tokenize with its tokenizer
 * (the work is in common/prog/streaminfo.c) */
#include "cli.h"
#include "streaminfo.h"
#include "sysinfo.h"
#include "util.h"

#include <getopt.h>

static const struct option opts[] = {
	{"json", no_argument, 0, 'j'}, {"tokenize", required_argument, 0, 'T'},
	{"system", no_argument, 0, 'S'},
	{"no-verify", no_argument, 0, LM_OPT_NO_VERIFY}, LM_CLI_HELPOPTS, {0, 0, 0, 0}};

static const char usage_text[] =
	"usage: lm-info [--json] [--tokenize TEXT] [FILE]\n"
	"       lm-info --system [--json]\n"
	"Describe an lm-stream read from FILE or standard input: header, provenance, and per\n"
	"tensor name, dtype, shape, parameters, bytes, sparsity and bits per weight (packed\n"
	"quantized types: the scales and zero points included).\n"
	"  -j, --json           print one JSON object instead of a table\n"
	"      --tokenize TEXT  print the token ids of TEXT (no BOS) with the stream's tokenizer\n"
	"      --no-verify      skip CRC-32 checks\n"
	"      --system         describe this machine instead: CPU features, the OpenBLAS\n"
	"                       core and who chose it, lmpipe's kernels (no stream is read)\n"
	"  -h, --help           show this help\n"
	"  -V, --version        show the version\n";

int main(int argc, char **argv)
{
	int c, as_json = 0, sys = 0;
	struct lm_cli_flags fl = LM_CLI_FLAGS_INIT;  /* --no-verify; -j is --json here */
	const char *text = NULL;
	struct lm_reader *rd;
	struct lm_header h;

	lm_prog_init(argc, argv);
	while ((c = getopt_long(argc, argv, "jhV", opts, NULL)) != -1) {
		switch (c) {
		case 'j': as_json = 1; break;
		case 'T': text = optarg; break;
		case 'S': sys = 1; break;
		default: lm_cli_flag(c, &fl, "lm-info", usage_text);
		}
	}
	if (argc - optind > 1 || (sys && (argc > optind || text)))
		lm_usage(usage_text, 2);
	if (sys) {
		lm_info_system(as_json);
		lm_fshut_stdout();
		return 0;
	}
	rd = lm_in_open(optind < argc ? argv[optind] : NULL);
	lm_reader_set_verify(rd, fl.verify);
	if (lm_read_header(rd, &h) < 0)
		die_lm(lm_reader_name(rd));
	if (text)
		lm_info_tokenize(rd, text);
	else
		lm_info_describe(rd, &h, as_json);
	lm_header_free(&h);
	lm_reader_close(rd);
	lm_fshut_stdout();
	return 0;
}

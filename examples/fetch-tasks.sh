#!/bin/sh
# fetch-tasks.sh DIR: download the zero-shot tasks' data from the data sets' own public
# homes into DIR, in the layout lm-eval --task --data DIR reads (lm-eval(1), TASKS):
#
#   DIR/boolq/val.jsonl                 SuperGLUE v2 BoolQ.zip, BoolQ/val.jsonl
#   DIR/rte/dev.tsv                     GLUE RTE.zip, RTE/dev.tsv
#   DIR/hellaswag/hellaswag_val.jsonl   github.com/rowanz/hellaswag, data/
#   DIR/winogrande/dev.jsonl            winogrande_1.1.zip, winogrande_1.1/dev.jsonl (the xl dev set)
#   DIR/arc/ARC-{Easy,Challenge}-Test.jsonl   ARC-V1-Feb2018.zip
#   DIR/openbookqa/test.jsonl           OpenBookQA-V1-Sep2018.zip, Data/Main/test.jsonl
#   DIR/piqa/valid.jsonl, valid-labels.lst    yonatanbisk.com/piqa/data
#   DIR/lambada/lambada_test.jsonl      OpenAI's LAMBADA (the harness's lambada_openai)
#
# Downloads go to DIR/.partial/ (curl resumes) and files are moved into place only when
# complete; a file already in place is not fetched again. The two files whose SHA-256 is
# published with the harness's loaders are checked; SHA256SUMS in DIR records every file.
set -eu
prog=fetch-tasks
[ $# -eq 1 ] || { echo "usage: fetch-tasks.sh DIR" >&2; exit 2; }
dir=$1
for tool in curl sha256sum; do
	command -v $tool >/dev/null 2>&1 || { echo "$prog: $tool is not installed" >&2; exit 1; }
done
if command -v unzip >/dev/null 2>&1; then
	member() { unzip -p "$1" "$2"; }
elif command -v bsdtar >/dev/null 2>&1; then
	member() { bsdtar -xOf "$1" "$2"; }
else
	echo "$prog: neither unzip nor bsdtar is installed (apt-get install unzip)" >&2
	exit 1
fi
part=$dir/.partial
mkdir -p "$part"

fetch() { # URL OUT [SHA256]: into the partial folder, checked, then renamed
	[ -s "$2" ] && return 0
	f=$part/$(basename "$2")
	echo "$prog: $1" >&2
	curl -fsSL --retry 3 -C - -o "$f" "$1" || { echo "$prog: cannot download $1" >&2; exit 1; }
	if [ -n "${3:-}" ] && [ "$(sha256sum < "$f" | cut -d' ' -f1)" != "$3" ]; then
		rm -f "$f"
		echo "$prog: $1: SHA-256 differs from the published one" >&2
		exit 1
	fi
	mkdir -p "$(dirname "$2")"
	mv "$f" "$2"
}
unpack() { # ZIP MEMBER OUT: one file out of an archive, renamed when complete
	[ -s "$3" ] && return 0
	mkdir -p "$(dirname "$3")"
	member "$1" "$2" > "$3.tmp" && [ -s "$3.tmp" ] ||
		{ rm -f "$3.tmp"; echo "$prog: $1: no $2 in it" >&2; exit 1; }
	mv "$3.tmp" "$3"
}

fetch https://dl.fbaipublicfiles.com/glue/superglue/data/v2/BoolQ.zip "$part/zip/BoolQ.zip" \
	853fbe7922f70c59629f06a39e8d9ca440c3d740e760fd3b87a5ddf3dcba2436
unpack "$part/zip/BoolQ.zip" BoolQ/val.jsonl "$dir/boolq/val.jsonl"
fetch https://dl.fbaipublicfiles.com/glue/data/RTE.zip "$part/zip/RTE.zip"
unpack "$part/zip/RTE.zip" RTE/dev.tsv "$dir/rte/dev.tsv"
fetch https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl \
	"$dir/hellaswag/hellaswag_val.jsonl"
fetch https://storage.googleapis.com/ai2-mosaic/public/winogrande/winogrande_1.1.zip \
	"$part/zip/winogrande_1.1.zip"
unpack "$part/zip/winogrande_1.1.zip" winogrande_1.1/dev.jsonl "$dir/winogrande/dev.jsonl"
fetch https://ai2-public-datasets.s3.amazonaws.com/arc/ARC-V1-Feb2018.zip "$part/zip/ARC-V1-Feb2018.zip"
for s in Easy Challenge; do
	unpack "$part/zip/ARC-V1-Feb2018.zip" "ARC-V1-Feb2018-2/ARC-$s/ARC-$s-Test.jsonl" \
		"$dir/arc/ARC-$s-Test.jsonl"
done
fetch https://ai2-public-datasets.s3.amazonaws.com/open-book-qa/OpenBookQA-V1-Sep2018.zip \
	"$part/zip/OpenBookQA-V1-Sep2018.zip"
unpack "$part/zip/OpenBookQA-V1-Sep2018.zip" OpenBookQA-V1-Sep2018/Data/Main/test.jsonl \
	"$dir/openbookqa/test.jsonl"
fetch https://yonatanbisk.com/piqa/data/valid.jsonl "$dir/piqa/valid.jsonl"
fetch https://yonatanbisk.com/piqa/data/valid-labels.lst "$dir/piqa/valid-labels.lst"
fetch https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl \
	"$dir/lambada/lambada_test.jsonl" 4aa8d02cd17c719165fc8a7887fddd641f43fcafa4b1c806ca8abc31fabdb226

(cd "$dir" && find . -path ./.partial -prune -o -type f ! -name SHA256SUMS -print | sort |
	xargs sha256sum > SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
echo "$prog: $dir: the nine tasks' files are in place (SHA256SUMS lists them)" >&2

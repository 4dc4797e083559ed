#!/bin/sh
# fetch-hf.sh REPO DIR: download a Hugging Face model repository's files that lm-import
# reads (config.json, generation_config.json, vocab.json, merges.txt, and the weights in
# lm-import's order of preference: model.safetensors, its sharded index, pytorch_model.bin,
# its sharded index) into DIR, each checked against the hub's own listing
# (GET /api/models/REPO/tree/REV): sha256 for files in Git LFS, the git blob id for the
# others. Files are downloaded to DIR/.partial/ (curl resumes an interrupted download) and
# renamed into DIR only when their checksum matches; files already there are re-checked,
# not downloaded again. HF_ENDPOINT (default https://huggingface.co) and REV (default main)
# may be set; HF_TOKEN, when set, is sent for gated repositories.
set -eu
prog=fetch-hf
[ $# -eq 2 ] || { echo "usage: fetch-hf.sh REPO DIR" >&2; exit 2; }
repo=$1 dir=$2
hub=${HF_ENDPOINT:-https://huggingface.co}
rev=${REV:-main}
for tool in curl jq sha256sum sha1sum; do
	command -v $tool >/dev/null 2>&1 || { echo "$prog: $tool is not installed" >&2; exit 1; }
done
mkdir -p "$dir/.partial"
fetch() {	# fetch URL OUT: quietly, following redirects, resuming, failing on HTTP errors
	if [ -n "${HF_TOKEN:-}" ]; then
		curl -fsSL --retry 3 -C - -H "Authorization: Bearer $HF_TOKEN" -o "$2" "$1"
	else
		curl -fsSL --retry 3 -C - -o "$2" "$1"
	fi
}
list=$dir/.partial/tree.json
rm -f "$list"
fetch "$hub/api/models/$repo/tree/$rev" "$list" ||
	{ echo "$prog: $repo: cannot list $hub/api/models/$repo/tree/$rev" >&2; exit 1; }

# the checksum of PATH in the listing: "sha256 HEX" (LFS) or "git HEX" (git blob id)
sum_of() {
	jq -r --arg p "$1" '.[] | select(.type == "file" and .path == $p) |
		if .lfs then "sha256 \(.lfs.oid)" else "git \(.oid)" end' "$list"
}
has() { [ -n "$(sum_of "$1")" ]; }
size_of() { jq -r --arg p "$1" '.[] | select(.type == "file" and .path == $p) | .lfs.size // .size' "$list"; }
# does FILE match the listing's checksum for PATH?
check() {
	# shellcheck disable=SC2046 # "KIND HEX" becomes $3 and $4
	set -- "$1" "$2" $(sum_of "$2")
	case ${3:-} in
	sha256) got=$(sha256sum < "$1" | cut -d' ' -f1) ;;
	git) got=$({ printf 'blob %s\000' "$(wc -c < "$1" | tr -d ' ')"; cat "$1"; } | sha1sum | cut -d' ' -f1) ;;
	*) echo "$prog: $repo: $2 is not in the listing" >&2; return 1 ;;
	esac
	[ "$got" = "$4" ]
}
get() {		# get PATH: into DIR, checked
	if [ -f "$dir/$1" ] && check "$dir/$1" "$1"; then
		echo "$prog: $dir/$1: already there, checksum ok" >&2
		return 0
	fi
	echo "$prog: $repo: $1" >&2
	part=$dir/.partial/$(echo "$1" | tr / _)
	# a whole partial file: renamed if right (the last run stopped just before), else dropped
	if [ -f "$part" ] && [ "$(wc -c < "$part")" -ge "$(size_of "$1")" ]; then
		check "$part" "$1" && { mv "$part" "$dir/$1"; return 0; }
		rm -f "$part"
	fi
	fetch "$hub/$repo/resolve/$rev/$1" "$part" || { echo "$prog: $repo: $1: download failed" >&2; exit 1; }
	if ! check "$part" "$1"; then
		rm -f "$part"
		echo "$prog: $repo: $1: checksum does not match the hub's listing" >&2
		exit 1
	fi
	mkdir -p "$(dirname "$dir/$1")"
	mv "$part" "$dir/$1"
}

for f in config.json vocab.json merges.txt; do
	has $f || { echo "$prog: $repo: no $f in the repository" >&2; exit 1; }
	get $f
done
! has generation_config.json || get generation_config.json
sharded() {	# sharded INDEX: the index, then every shard its weight_map names
	get "$1"
	for shard in $(jq -r '.weight_map[]' "$dir/$1" | sort -u); do get "$shard"; done
}
if has model.safetensors; then
	get model.safetensors
elif has model.safetensors.index.json; then
	sharded model.safetensors.index.json
elif has pytorch_model.bin; then
	get pytorch_model.bin
elif has pytorch_model.bin.index.json; then
	sharded pytorch_model.bin.index.json
else
	echo "$prog: $repo: no weights lm-import reads (model.safetensors, pytorch_model.bin or a sharded index)" >&2
	exit 1
fi
rm -rf "$dir/.partial"
echo "$prog: $dir: complete; lm-import $dir" >&2

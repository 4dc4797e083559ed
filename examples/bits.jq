# bits.jq: from `lm-info --json`, the bits of each decoder layer's six linear weights (the
# matrices lm-prune and lm-quant touch) and their stored bits per weight, scales and zero
# points included, as lm-info counts them: "8 4 4 4<TAB>5.25". A layer whose six differ
# shows them joined by "/".
def linear: .name | test("^model\\.decoder\\.layers\\.[0-9]+\\.(self_attn\\.(q|k|v|out)_proj|fc1|fc2)\\.weight$");
def layer: .name | capture("layers\\.(?<i>[0-9]+)\\.").i | tonumber;
def nominal: .attrs.quant.bits // ({"f32": 32, "f16": 16, "bf16": 16}[.dtype]);
[.tensors[] | select(linear)] as $w
| if ($w | length) == 0 then error("no decoder linear weights in the stream") else . end
| [($w | group_by(layer) | map(map(nominal) | unique | map(tostring) | join("/")) | join(" ")),
   (($w | map(.params * .bits_per_weight) | add) / ($w | map(.params) | add))]
| @tsv

# quant.gp TSV PNG: perplexity against stored bits per weight of the six linear weights, one
# point style per method, each point labelled with its configuration.
tsv = ARG1; png = ARG2
set terminal pngcairo size 1000,600 font "sans,11"
set output png
set datafile separator "\t"
set logscale y
set autoscale fix
set offsets 0.5, 1.5, graph 0.06, graph 0.06
set xlabel "stored bits per weight of the quantized matrices (scales and zero points included)"
set ylabel "perplexity (log scale; lower is better)"
set title "Quantization: perplexity against size"
set key outside right top
set grid
# a logarithmic axis over less than a decade has no decade tics: name some
set ytics (10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 120, 150, 200, 300, 400, 500, 700, 1000, 2000, 5000, 10000)
# columns: 1 config, 2 method, 3 bits, 4 target_bits, 5 bits_per_layer,
# 6 stored bits per weight, 7 perplexity; the methods in the table's order. Mixed-precision
# methods often land on the same size: each is nudged sideways so all stay visible, and only
# the uniform configurations are labelled (the table has every row's settings).
methods = system(sprintf("awk -F '\t' 'NR > 1 && !seen[$2]++ { printf \"%%s \", $2 }' '%s'", tsv))
style(m) = m eq "dense" ? 3 : m eq "rtn" ? 7 : m eq "gptq" ? 5 : m eq "pmpq" ? 9 : m eq "cmpq" ? 11 : 13
nudge(m) = m eq "pmpq" ? -0.12 : m eq "tdmpq" ? 0.12 : 0
pick(m) = (strcol(2) eq m) ? column(7) : NaN
uniform(s) = (s eq "rtn" || s eq "gptq" || s eq "dense")
plot for [m in methods] tsv skip 1 using ($6 + nudge(m)):(pick(m)) with points pt style(m) ps 1.6 title m, \
     tsv skip 1 using 6:(uniform(strcol(2)) ? column(7) : NaN):1 with labels offset char 0.8,0.6 left \
       font "sans,9" notitle

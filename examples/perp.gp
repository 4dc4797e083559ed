# perp.gp DAT PNG [DENSE]: clustered bars, one cluster per pruning, one bar per retraining
# (a gap where a pair is not in the grid), the dense model's perplexity as a dashed line.
dat = ARG1; png = ARG2; dense = ARG3
set terminal pngcairo noenhanced size 1000,560 font "sans,11"
set output png
set datafile separator "\t"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:*]
set ylabel "perplexity (lower is better)"
set xlabel "pruning (of q/k/v/out_proj/fc1/fc2: a fraction, or N of every M)"
set title "Pruning, then retraining: perplexity of the held-out text"
set key outside right top title "retraining"
set grid ytics
if (strlen(dense) > 0) {
	set arrow from graph 0, first dense to graph 1, first dense nohead dt 2 lw 2 lc rgb "black" front
	set label sprintf("dense %.2f", dense + 0) at graph 0.01, first dense offset 0,0.7 front
}
ncol = system(sprintf("awk -F '\t' 'NR == 1 { print NF; exit }' '%s'", dat)) + 0
plot for [i=2:ncol] dat using i:xtic(1) title columnheader(i)

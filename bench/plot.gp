# Plot of one benchmark run (bench/run.sh). Variables from the command line:
#   dir    directory with <series>.dat (conc eps p50 p90 p99 p999) and pct.dat/pct.ref
#   out    PNG file;  term  pngcairo or png;  series  space-separated series names
#   sw, hw the OpenSSL and SoftHSM crypto ceilings in enrollments/s (drawn as dotted lines)
# Left: enrollments/s against concurrency; middle: p50 and p99 against concurrency;
# right: latency percentiles of each server at one concurrency (16 when measured).
if (term eq 'pngcairo') { set terminal pngcairo size 1500,560 font 'sans,9' noenhanced } \
else { set terminal png size 1500,560 noenhanced }
set output out
set multiplot layout 1,3 title 'scepd benchmark: '.system('date +%F').' on '.system('hostname -s')
set grid
set key below
set logscale x 2
set xrange [0.7:400]
set xtics (1,4,16,64,256)
set xlabel 'concurrent connections'
set ylabel 'enrollments/s'
set yrange [0:*]
set title 'throughput'
plot for [s in series] dir.'/'.s.'.dat' using 1:2 with linespoints lw 2 pt 7 title s, \
     sw with lines dt 2 lw 1.5 lc rgb 'gray40' title 'OpenSSL ceiling', \
     hw with lines dt 2 lw 1.5 lc rgb 'black' title 'SoftHSM ceiling'

set title 'latency p50 (dashed) and p99 (solid)'
set ylabel 'ms'
set logscale y 10
set yrange [*:*]
plot for [i=1:words(series)] dir.'/'.word(series,i).'.dat' using 1:5 with linespoints lw 2 pt 7 lc i title word(series,i), \
     for [i=1:words(series)] dir.'/'.word(series,i).'.dat' using 1:3 with linespoints lw 1 dt 2 pt 6 lc i notitle

unset logscale
set xrange [*:*]
set yrange [0:*]
set autoscale x
set xtics auto
set xtics rotate by -20
set title 'latency percentiles at concurrency '.system('cat '.dir.'/pct.ref')
set xlabel ''
set ylabel 'ms'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key inside top left vertical Left reverse
plot dir.'/pct.dat' using 2:xtic(1) title 'p50', '' using 3 title 'p90', '' using 4 title 'p99', '' using 5 title 'p99.9'
unset multiplot

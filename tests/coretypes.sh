#!/bin/sh
# coretypes.sh: the OpenBLAS core types (OPENBLAS_CORETYPE values) this CPU can execute, one a
# line, among those the x86-64 machines lmpipe meets get by default: AVX2 (Haswell, Zen) and
# AVX-512 (SkylakeX, Cooperlake with BF16). Read from the CPU flags, so a core type whose
# instructions the CPU lacks is never forced on it.
flags=$(grep -m 1 '^flags' /proc/cpuinfo 2>/dev/null)
has() { for f in "$@"; do case " $flags " in *" $f "*) ;; *) return 1 ;; esac; done; }
has avx2 fma && echo Haswell && echo Zen
has avx512f avx512bw avx512dq avx512vl avx512cd && echo SkylakeX
has avx512f avx512bw avx512dq avx512vl avx512_bf16 && echo Cooperlake
exit 0

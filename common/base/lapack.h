/* lapack.h: the few LAPACK routines lmpipe calls, with the Fortran calling convention.
 *
 * Debian's libopenblas carries LAPACK (no separate liblapacke needed), but ships no C
 * prototypes for the Fortran symbols, so they are declared here. Fortran passes every
 * argument by reference, matrices column-major, and appends the length of each CHARACTER
 * argument as a hidden size_t after the others (gfortran >= 8); passing it keeps the
 * call right whichever way the library was built. The integer type is the 32-bit one of
 * libopenblas0 (not the 64-bit-index libopenblas64).
 *
 * A symmetric matrix is its own transpose, so row-major callers can pass it as is: what
 * LAPACK calls the lower triangle is the row-major upper one. */
#ifndef LM_LAPACK_H
#define LM_LAPACK_H

#include <stddef.h>

/* Cholesky factorization A = L L^T ("L") or U^T U ("U") in place; info > 0: the leading
 * minor of that order is not positive definite */
void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info, size_t uplo_len);
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
/* inverse of A from its Cholesky factor (potrf's output), into the same triangle */
void spotri_(const char *uplo, const int *n, float *a, const int *lda, int *info, size_t uplo_len);
void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
/* inverse of a triangular A in place (diag "N": its own diagonal, "U": a unit one) */
void strtri_(const char *uplo, const char *diag, const int *n, float *a, const int *lda,
             int *info, size_t uplo_len, size_t diag_len);
void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda,
             int *info, size_t uplo_len, size_t diag_len);
/* singular values (and vectors: jobu/jobvt "N", "S" thin, "A" all) of A [m,n], destroyed;
 * lwork = -1 asks for the workspace size in work[0]; info > 0: not converged */
void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
             const int *lda, double *s, double *u, const int *ldu, double *vt, const int *ldvt,
             double *work, const int *lwork, int *info, size_t jobu_len, size_t jobvt_len);

#endif

// The CPU row kernels compiled for avx2: 32-byte vectors, target "avx2" (x86-64 GCC builds).
#include <cstring>

#include "rows.h"

#if defined(VERIFIER_X86_VARIANTS)
#pragma GCC push_options
#pragma GCC target("avx2")
#define VERIFIER_ISA avx2
#define VERIFIER_ISA_NAME "avx2"
#define VERIFIER_VECTOR_BYTES 32
#include "rows_impl.h"
#pragma GCC pop_options
#endif

// The CPU row kernels compiled for avx512: 64-byte vectors, target "avx512f" (x86-64 GCC builds).
#include <cstring>

#include "rows.h"

#if defined(VERIFIER_X86_VARIANTS)
#pragma GCC push_options
#pragma GCC target("avx512f")
#define VERIFIER_ISA avx512
#define VERIFIER_ISA_NAME "avx512"
#define VERIFIER_VECTOR_BYTES 64
#include "rows_impl.h"
#pragma GCC pop_options
#endif

// The CPU row kernels compiled for baseline: 16-byte vectors, plain x86-64 / any CPU.
#include <cstring>

#include "rows.h"
#define VERIFIER_ISA baseline
#define VERIFIER_ISA_NAME "baseline"
#define VERIFIER_VECTOR_BYTES 16
#include "rows_impl.h"


// Large outputs of the CPU kernels, kept for reuse after they are freed.
//
// Why: glibc hands a multi-megabyte allocation to the kernel with mmap and
// back with munmap when it is freed, so an operator called in a loop (a
// training batch of crops, Dice's gradient) pays for faulting in and zeroing
// fresh pages on every call. Measured on the 75 MB crop3d output: 12 ms of
// faults with 4 KB pages, 3 ms advised onto 2 MB pages, and phases of 85 ms on
// this virtualized machine (pages given back to the host must be faulted in
// twice) - against 4.5 ms for the crop itself. Reusing a freed output of the
// same size has no faults at all; this is what the CUDA caching allocator
// does on the GPU, on a small scale: only outputs of at least 4 MB, at most
// TORCHLITE_OUTPUT_CACHE_MB (default 512, 0 turns the cache off) held while
// unused, the oldest given back first.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace torchlite::cpu {

// An uninitialized contiguous CPU tensor for a kernel to write every element
// of. An ordinary tensor (resizable, shareable between processes); only its
// memory may be a reused block.
at::Tensor empty_output(at::IntArrayRef sizes, at::ScalarType dtype);

// {bytes held unused, blocks held unused, limit in bytes, reuses, fresh
// allocations} since the process started (or the cache was last released).
std::vector<int64_t> output_cache_stats();

// Gives every unused block back to the system.
void output_cache_release();

}  // namespace torchlite::cpu

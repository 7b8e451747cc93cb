// Why: every U-Net call allocates and frees the same activations (8-17 MB
// each for a lung-sized slice). glibc serves blocks of that size with mmap,
// or from the heap top that it trims back to the system once more than a
// few MB are free, so each call faults in fresh zeroed pages again: measured
// on the 2-core VM, a quarter of the program's time was in the kernel's page
// fault path, and segmenting a full-size scan took 4.8 s against 3.55 s with
// freed blocks kept (the U-Net's arithmetic itself runs near the CPU's
// float32 peak, so this was the slack). Blocks up to 32 MB (glibc's largest
// mmap threshold) now come from the heap, which is never trimmed: the process
// keeps its peak heap, as the CUDA caching allocator keeps device memory.
// torchlite/utils/malloc_policy.py does the same for the Python commands.
#include "malloc_policy.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace torchlite::app {

bool keep_freed_memory() {
  const char* setting = std::getenv("TORCHLITE_KEEP_FREED_MEMORY");
  if (setting != nullptr && std::strcmp(setting, "0") == 0) return false;
#if defined(__GLIBC__)
  constexpr int kMmapThreshold = 32 << 20;  // glibc's maximum (HEAP_MAX_SIZE / 2 on 64-bit)
  constexpr int kTrimThreshold = 1 << 30;   // never, in practice
  return mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1 && mallopt(M_TRIM_THRESHOLD, kTrimThreshold) == 1;
#else
  return false;
#endif
}

}  // namespace torchlite::app

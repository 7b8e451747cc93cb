// How the program asks the C allocator to treat freed memory (see malloc_policy.cpp).
#pragma once

namespace torchlite::app {

// Keeps freed memory in the process for the next allocation instead of giving
// it back to the system: glibc only, and not when the environment variable
// TORCHLITE_KEEP_FREED_MEMORY is "0". Returns whether it was applied.
bool keep_freed_memory();

}  // namespace torchlite::app

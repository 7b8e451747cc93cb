// The cache behind empty_output (see output_pool.h for why it exists).
#include "memory/output_pool.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>

#if defined(__linux__)
#include <pthread.h>
#include <sys/mman.h>
#endif

namespace torchlite::cpu {
namespace {

// Smaller outputs fault in quickly enough and go to torch's own allocator.
constexpr size_t kMinPooledBytes = size_t(4) << 20;
// Blocks are whole 2 MB pages: aligned so the kernel can back them with huge
// pages, and sized so slightly different requests share a block size.
constexpr size_t kHugePage = size_t(2) << 20;
constexpr int64_t kDefaultLimitMB = 512;

int64_t limit_bytes_from_env() {
  const char* text = std::getenv("TORCHLITE_OUTPUT_CACHE_MB");
  if (text == nullptr || *text == '\0') return kDefaultLimitMB << 20;
  char* end = nullptr;
  const long long mb = std::strtoll(text, &end, 10);
  TORCH_CHECK(end != text && *end == '\0' && mb >= 0,
              "TORCHLITE_OUTPUT_CACHE_MB must be a whole number of megabytes >= 0, got '", text, "'");
  return int64_t(mb) << 20;
}

class OutputPool final : public c10::Allocator {
 public:
  OutputPool() : limit_(limit_bytes_from_env()) {
#if defined(__linux__)
    // A fork (DataLoader workers) while another thread holds the lock would
    // leave it locked forever in the child: hold it across the fork instead.
    pthread_atfork([] { pool().mu_.lock(); }, [] { pool().mu_.unlock(); }, [] { pool().mu_.unlock(); });
#endif
  }

  static OutputPool& pool() {
    // Never destroyed: tensors may still be freed during static destruction.
    static OutputPool* p = new OutputPool();
    return *p;
  }

  c10::DataPtr allocate(size_t n) override {
    if (n < kMinPooledBytes) return c10::GetCPUAllocator()->allocate(n);
    const size_t bytes = (n + kHugePage - 1) / kHugePage * kHugePage;
    void* p = take(bytes);
    if (p == nullptr) p = fresh(bytes);
    return {p, p, &OutputPool::give_back, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return {cached_bytes_, int64_t(cached_.size()), limit_, hits_, misses_};
  }

  void release() {
    std::deque<Block> drop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      drop.swap(cached_);
      cached_bytes_ = 0;
      hits_ = misses_ = 0;
    }
    for (const Block& b : drop) std::free(b.ptr);
  }

 private:
  struct Block {
    void* ptr;
    size_t bytes;
  };

  void* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    // Newest first: its pages are the likeliest to be in the caches.
    for (auto it = cached_.rbegin(); it != cached_.rend(); ++it) {
      if (it->bytes == bytes) {
        void* p = it->ptr;
        cached_.erase(std::next(it).base());
        cached_bytes_ -= int64_t(bytes);
        live_[p] = bytes;
        ++hits_;
        return p;
      }
    }
    ++misses_;
    return nullptr;
  }

  void* fresh(size_t bytes) {
    void* p = nullptr;
    TORCH_CHECK(posix_memalign(&p, kHugePage, bytes) == 0 && p != nullptr,
                "torchlite: out of memory allocating an output of ", bytes, " bytes");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    (void)madvise(p, bytes, MADV_HUGEPAGE);  // advice only: ignore failure
#endif
    std::lock_guard<std::mutex> lock(mu_);
    live_[p] = bytes;
    return p;
  }

  static void give_back(void* p) {
    OutputPool& self = pool();
    std::deque<Block> drop;
    {
      std::lock_guard<std::mutex> lock(self.mu_);
      auto it = self.live_.find(p);
      TORCH_INTERNAL_ASSERT(it != self.live_.end(), "torchlite output cache: unknown block");
      const size_t bytes = it->second;
      self.live_.erase(it);
      if (int64_t(bytes) > self.limit_) {
        drop.push_back({p, bytes});
      } else {
        self.cached_.push_back({p, bytes});
        self.cached_bytes_ += int64_t(bytes);
        while (self.cached_bytes_ > self.limit_) {
          drop.push_back(self.cached_.front());
          self.cached_bytes_ -= int64_t(self.cached_.front().bytes);
          self.cached_.pop_front();
        }
      }
    }
    for (const Block& b : drop) std::free(b.ptr);  // munmap outside the lock
  }

  std::mutex mu_;
  const int64_t limit_;
  std::deque<Block> cached_;  // oldest first
  std::unordered_map<void*, size_t> live_;
  int64_t cached_bytes_ = 0;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
};

}  // namespace

at::Tensor empty_output(at::IntArrayRef sizes, at::ScalarType dtype) {
  return at::Tensor(at::detail::empty_generic(sizes, &OutputPool::pool(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                              dtype, c10::MemoryFormat::Contiguous));
}

std::vector<int64_t> output_cache_stats() { return OutputPool::pool().stats(); }

void output_cache_release() { OutputPool::pool().release(); }

}  // namespace torchlite::cpu

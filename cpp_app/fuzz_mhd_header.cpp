// Fuzz target for the MetaImage reader (metaimage.cpp, built without torch).
//
// One input is a whole .mhd file: the header is parsed, and when it parses the
// input itself is taken as the data file (as LOCAL data is), located and
// decoded, so size checks, zlib inflation and byte swapping are fuzzed too.
// The contract checked: every input either parses or raises MetaImageError
// with a one-line message; anything else (another exception, a sanitizer
// report, a span outside the file) is a crash.
//
// With clang, -fsanitize=fuzzer supplies main() (libFuzzer). Without it
// (TORCHLITE_FUZZ_STANDALONE, e.g. gcc), the main() below runs the seeds and
// then random mutations of them for the given time: no coverage guidance, but
// the same entry point, the same command line (-max_total_time=, -runs=,
// -seed=, -artifact_prefix=, corpus folders; only files: run each once, as
// libFuzzer does) and sanitizers still catch what it reaches.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "metaimage.h"

namespace {
// Inputs that would need more voxel memory than this are parsed and located,
// not decoded: the fuzzer must not die of allocation, only of bugs.
constexpr int64_t kMaxDecodedBytes = 4 << 20;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace torchlite::app;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const MetaImage image = parse_header(text, "fuzz.mhd");
    const DataSpan span = locate_data(image, size);
    if (span.offset > size || span.length > size - span.offset) std::abort();  // a span outside the file
    if (image.nbytes > kMaxDecodedBytes) return 0;
    std::vector<uint8_t> voxels(static_cast<size_t>(image.nbytes));
    if (image.compressed) {
      decode_data(image, data + span.offset, static_cast<size_t>(span.length), voxels.data());
    } else {
      std::memcpy(voxels.data(), data + span.offset, static_cast<size_t>(span.length));
      decode_data(image, voxels.data(), voxels.size(), voxels.data());
    }
  } catch (const MetaImageError& e) {
    if (std::strchr(e.what(), '\n') || std::strchr(e.what(), '\r')) std::abort();  // the message must be one line
  }
  return 0;
}

#ifdef TORCHLITE_FUZZ_STANDALONE
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

#include <fcntl.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

constexpr size_t kMaxInputBytes = 64 << 10;
constexpr size_t kMaxPool = 2000;

// Where the input being run is kept for the crash handler (async-signal-safe:
// plain pointers and write(2)).
const uint8_t* g_current = nullptr;
size_t g_current_size = 0;
const char* g_crash_file = "crash-fuzz_mhd_header.mhd";

void save_current_input() {
  const int fd = ::open(g_crash_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  size_t done = 0;
  while (g_current && done < g_current_size) {
    const ssize_t n = ::write(fd, g_current + done, g_current_size - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  const char msg[] = "fuzz_mhd_header: crashing input written to ";
  (void)!::write(2, msg, sizeof msg - 1);
  (void)!::write(2, g_crash_file, std::strlen(g_crash_file));
  (void)!::write(2, "\n", 1);
}

void on_fatal_signal(int sig) {
  save_current_input();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

extern "C" void __sanitizer_set_death_callback(void (*)(void)) __attribute__((weak));

// Tokens a header is made of, and numbers that break naive parsers.
using namespace std::string_view_literals;
constexpr std::string_view kTokens[] = {
    "\n"sv, "="sv, " = "sv, "\r\n"sv, "\t"sv, "NDims = "sv, "DimSize = "sv, "ElementSpacing = "sv,
    "ElementType = "sv, "ElementDataFile = "sv, "LOCAL"sv, "CompressedData = True\n"sv, "CompressedDataSize = "sv,
    "HeaderSize = -1\n"sv, "HeaderSize = "sv, "BinaryDataByteOrderMSB = True\n"sv, "TransformMatrix = "sv,
    "Offset = "sv, "Origin = "sv, "MET_SHORT"sv, "MET_DOUBLE"sv, "MET_UCHAR"sv, "MET_ULONG_LONG"sv, "+"sv,
    "LIST"sv, "%d"sv, "True"sv, "False"sv, "\0"sv,
    "\x78\x9c"sv,                                          // a zlib header
    "\x1f\x8b\x08"sv,                                      // a gzip header
    "\x78\x9c\x63\x00\x00\x00\x01\x00\x01"sv,        // zlib: one zero byte
};
constexpr std::string_view kNumbers[] = {
    "0"sv, "-1"sv, "1"sv, "2"sv, "3"sv, "4294967296"sv, "9223372036854775807"sv, "9223372036854775808"sv,
    "-9223372036854775808"sv, "1099511627776"sv, "nan"sv, "inf"sv, "1e308"sv, "1e-320"sv, "0.5"sv, "-0"sv,
};

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  size_t below(size_t n) { return n ? std::uniform_int_distribution<size_t>(0, n - 1)(rng_) : 0; }

  void mutate(Bytes& b, const std::vector<Bytes>& pool) {
    const int rounds = 1 + static_cast<int>(below(4));
    for (int r = 0; r < rounds; ++r) {
      switch (below(8)) {
        case 0:  // flip a bit
          if (!b.empty()) b[below(b.size())] ^= static_cast<uint8_t>(1u << below(8));
          break;
        case 1:  // any byte
          if (!b.empty()) b[below(b.size())] = static_cast<uint8_t>(below(256));
          break;
        case 2: {  // insert a dictionary token
          const std::string_view token = below(2) ? kTokens[below(std::size(kTokens))] : kNumbers[below(std::size(kNumbers))];
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(below(b.size() + 1)), token.begin(), token.end());
          break;
        }
        case 3: {  // erase a range
          if (b.empty()) break;
          const size_t at = below(b.size()), n = 1 + below(std::min<size_t>(b.size() - at, 32));
          b.erase(b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(at + n));
          break;
        }
        case 4: {  // duplicate a range (repeated lines, long lines)
          if (b.empty()) break;
          const size_t at = below(b.size()), n = 1 + below(std::min<size_t>(b.size() - at, 64));
          const Bytes chunk(b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(at + n));
          const size_t copies = 1 + below(below(2) ? 4 : 200);
          for (size_t c = 0; c < copies; ++c) b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), chunk.begin(), chunk.end());
          break;
        }
        case 5:  // truncate
          b.resize(below(b.size() + 1));
          break;
        case 6: {  // splice: this input's head, another's tail
          const Bytes& other = pool[below(pool.size())];
          const size_t cut = below(b.size() + 1), from = below(other.size() + 1);
          b.resize(cut);
          b.insert(b.end(), other.begin() + static_cast<std::ptrdiff_t>(from), other.end());
          break;
        }
        default: {  // replace a digit run with an interesting number
          if (b.empty()) break;
          size_t at = below(b.size());
          while (at < b.size() && !(b[at] >= '0' && b[at] <= '9')) ++at;
          size_t end = at;
          while (end < b.size() && b[end] >= '0' && b[end] <= '9') ++end;
          const std::string_view token = kNumbers[below(std::size(kNumbers))];
          b.erase(b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(end));
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), token.begin(), token.end());
          break;
        }
      }
    }
    if (b.size() > kMaxInputBytes) b.resize(kMaxInputBytes);
  }

 private:
  std::mt19937_64 rng_;
};

void load(const fs::path& path, std::vector<Bytes>& pool) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      if (entry.is_regular_file(ec)) load(entry.path(), pool);
    }
    return;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "fuzz_mhd_header: cannot read %s\n", path.c_str());
    std::exit(2);
  }
  Bytes b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (b.size() > kMaxInputBytes) b.resize(kMaxInputBytes);
  pool.push_back(std::move(b));
}

bool parses(const Bytes& b) {
  try {
    torchlite::app::parse_header(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()), "fuzz.mhd");
    return true;
  } catch (const torchlite::app::MetaImageError&) {
    return false;
  }
}

void run_one(const Bytes& b) {
  g_current = b.data();
  g_current_size = b.size();
  LLVMFuzzerTestOneInput(b.data(), b.size());
}

}  // namespace

int main(int argc, char** argv) {
  double max_seconds = 10;
  long long max_runs = -1;
  uint64_t seed = 1;
  static std::string crash_file;
  std::vector<Bytes> pool;
  bool only_files = true;  // libFuzzer: given only files, run each once and stop
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("-max_total_time=", 0) == 0) max_seconds = std::atof(arg.c_str() + 16);
    else if (arg.rfind("-runs=", 0) == 0) max_runs = std::atoll(arg.c_str() + 6);
    else if (arg.rfind("-seed=", 0) == 0) seed = std::strtoull(arg.c_str() + 6, nullptr, 10);
    else if (arg.rfind("-artifact_prefix=", 0) == 0) crash_file = arg.substr(17) + "crash-fuzz_mhd_header.mhd";
    else if (arg.rfind("-", 0) == 0) std::fprintf(stderr, "fuzz_mhd_header: ignoring libFuzzer flag %s\n", arg.c_str());
    else {
      std::error_code ec;
      only_files = only_files && !fs::is_directory(arg, ec);
      load(arg, pool);
    }
  }
  if (!crash_file.empty()) g_crash_file = crash_file.c_str();
  for (const int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) std::signal(sig, on_fatal_signal);
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(save_current_input);
  if (pool.empty()) {
    only_files = false;
    pool.push_back(Bytes{});
  }
  if (only_files) max_runs = 0;

  const size_t n_seeds = pool.size();
  for (size_t i = 0; i < n_seeds; ++i) run_one(pool[i]);

  Mutator mutator(seed);
  const auto start = std::chrono::steady_clock::now();
  long long runs = static_cast<long long>(n_seeds);
  for (;; ++runs) {
    if (max_runs >= 0 && runs >= max_runs) break;
    if ((runs & 63) == 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >= max_seconds) break;
    Bytes input = pool[mutator.below(pool.size())];
    mutator.mutate(input, pool);
    run_one(input);
    // Crude feedback in place of coverage: inputs whose header still parses
    // reach the data decoder, so they are worth mutating further.
    if (pool.size() < kMaxPool && parses(input)) pool.push_back(std::move(input));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "fuzz_mhd_header (standalone, seed %llu): %lld runs in %.1f s from %zu seeds, pool %zu: no crash\n",
               static_cast<unsigned long long>(seed), runs, seconds, n_seeds, pool.size());
  return 0;
}
#endif  // TORCHLITE_FUZZ_STANDALONE

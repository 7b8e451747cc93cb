// MetaImage reading: see metaimage.h for the rules (they are the Python
// reader's, torchlite/data/metaimage.py).
#include "metaimage.h"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

#ifndef TORCHLITE_MHD_NO_TORCH
#include <ATen/ATen.h>
#endif

namespace fs = std::filesystem;

namespace torchlite::app {

namespace {
// A message kept on one line: control characters (which a path, an
// ElementDataFile value or a key may hold) are written as \xNN.
std::string one_line(const std::string& text) {
  std::string out;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += ch;
    }
  }
  return out;
}
}  // namespace

MetaImageError::MetaImageError(const fs::path& file, std::string field, std::string reason)
    : std::runtime_error(one_line(file.string() + ": " + field + ": " + reason)),
      file_(file),
      field_(std::move(field)),
      reason_(std::move(reason)) {}

namespace {

struct ElementType {
  const char* name;
  int size;
};
constexpr ElementType kElementTypes[] = {
    {"MET_CHAR", 1},      {"MET_UCHAR", 1},         {"MET_SHORT", 2}, {"MET_USHORT", 2},
    {"MET_INT", 4},       {"MET_UINT", 4},          {"MET_LONG", 4},  {"MET_ULONG", 4},
    {"MET_LONG_LONG", 8}, {"MET_ULONG_LONG", 8},    {"MET_FLOAT", 4}, {"MET_DOUBLE", 8},
};

const char* canonical_key(std::string_view key) {
  static const std::pair<std::string_view, const char*> synonyms[] = {
      {"Origin", "Offset"},
      {"Position", "Offset"},
      {"Orientation", "TransformMatrix"},
      {"Rotation", "TransformMatrix"},
      {"BinaryDataByteOrderMSB", "ElementByteOrderMSB"},
  };
  for (const auto& [synonym, canonical] : synonyms) {
    if (key == synonym) return canonical;
  }
  return nullptr;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view strip(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// A value as it appears in an error message: quoted, on one line, not too long.
std::string quote_value(std::string_view s, size_t max_chars = 80) {
  std::string out = "'";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == max_chars) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\'' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "'";
}

std::vector<std::string_view> split_whitespace(std::string_view s) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    if (j > i) parts.push_back(s.substr(i, j - i));
    i = j;
  }
  return parts;
}

// from_chars: locale-independent (strtod is not), no hex floats, and it tells
// "not a number" from "out of range". Python's int()/float() accept a leading
// '+', so we do too.
template <typename T>
std::errc parse_number(std::string_view part, T& value) {
  if (part.size() > 1 && part[0] == '+' && part[1] != '-' && part[1] != '+') part.remove_prefix(1);
  const char* end = part.data() + part.size();
  auto [ptr, ec] = std::from_chars(part.data(), end, value);
  if (ec == std::errc() && ptr != end) return std::errc::invalid_argument;
  return ec;
}

// One header's fields: canonical key -> (key as written, value).
using Fields = std::map<std::string, std::pair<std::string, std::string>, std::less<>>;

class HeaderParser {
 public:
  explicit HeaderParser(const fs::path& path) : path_(path) {}

  [[noreturn]] void fail(std::string field, std::string reason) const {
    throw MetaImageError(path_, std::move(field), std::move(reason));
  }

  // Splits the text into fields, stopping after ElementDataFile; returns the
  // header's length in bytes (where LOCAL data starts).
  int64_t read_fields(std::string_view text) {
    size_t offset = 0;
    for (int line_no = 1; line_no <= kMaxHeaderLines; ++line_no) {
      if (offset >= text.size()) {
        if (fields_.empty()) fail("header", "empty file");
        fail("ElementDataFile", "missing");
      }
      const size_t newline = text.find('\n', offset);
      const size_t end = newline == std::string_view::npos ? text.size() : newline + 1;
      const std::string where = "line " + std::to_string(line_no);
      if (end - offset > kMaxHeaderLineBytes) {
        fail(where, "longer than " + std::to_string(kMaxHeaderLineBytes) + " bytes: not a MetaImage header");
      }
      const std::string_view raw = text.substr(offset, end - offset);
      offset = end;
      for (const char ch : raw) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == 0) fail(where, "contains a NUL byte: not a MetaImage header");
        if (c >= 0x80) fail(where, "not ASCII text: not a MetaImage header");
        if (c < 0x20 && !is_space(ch)) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", c);
          fail(where, std::string("contains control character ") + hex + ": not a MetaImage header");
        }
      }
      const std::string_view line = strip(raw);
      if (line.empty()) continue;
      const size_t eq = line.find('=');
      const std::string_view key = eq == std::string_view::npos ? line : strip(line.substr(0, eq));
      if (eq == std::string_view::npos || key.empty()) {
        fail(where, "expected 'Key = Value', got " + quote_value(line, 60));
      }
      const std::string_view value = strip(line.substr(eq + 1));
      const char* synonym_of = canonical_key(key);
      const std::string canonical = synonym_of ? synonym_of : std::string(key);
      if (auto it = fields_.find(canonical); it != fields_.end()) {
        fail(std::string(key), "given twice (also as " + it->second.first + ")");
      }
      fields_.emplace(canonical, std::make_pair(std::string(key), std::string(value)));
      if (key == "ElementDataFile") return static_cast<int64_t>(offset);  // MetaIO: the last field
    }
    fail("ElementDataFile", "not found in the first " + std::to_string(kMaxHeaderLines) + " lines");
  }

  const std::pair<std::string, std::string>* get(std::string_view canonical) const {
    auto it = fields_.find(canonical);
    return it == fields_.end() ? nullptr : &it->second;
  }

  const std::pair<std::string, std::string>& require(std::string_view canonical) const {
    const auto* field = get(canonical);
    if (!field) fail(std::string(canonical), "missing");
    return *field;
  }

  template <typename T>
  std::vector<T> numbers(const std::pair<std::string, std::string>& field, size_t count) const {
    const auto& [key, value] = field;
    constexpr const char* kind = std::is_integral_v<T> ? "int" : "float";
    std::vector<T> out;
    for (const std::string_view part : split_whitespace(value)) {
      T number{};
      const std::errc ec = parse_number(part, number);
      if (ec == std::errc::result_out_of_range) {
        fail(key, "value " + quote_value(part) + " is out of range for a " + (std::is_integral_v<T> ? "64-bit int" : "double"));
      }
      if (ec != std::errc()) {
        fail(key, "expected " + std::to_string(count) + " " + kind + " values, got " + quote_value(value));
      }
      out.push_back(number);
    }
    if (out.size() != count) {
      fail(key, "expected " + std::to_string(count) + " values, got " + std::to_string(out.size()) + " (" +
                    quote_value(value) + ")");
    }
    if constexpr (!std::is_integral_v<T>) {
      for (const T number : out) {
        if (!std::isfinite(number)) fail(key, "values must be finite, got " + quote_value(value));
      }
    }
    return out;
  }

  bool boolean(const std::pair<std::string, std::string>& field) const {
    std::string low = field.second;
    for (char& c : low) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (low == "true" || low == "1") return true;
    if (low == "false" || low == "0") return false;
    fail(field.first, "expected True or False, got " + quote_value(field.second));
  }

 private:
  const fs::path& path_;
  Fields fields_;
};

[[noreturn]] void size_error(const MetaImage& image, const std::string& got, uint64_t need) {
  throw MetaImageError(image.data_path, "DimSize",
                       got + ", but DimSize " + std::to_string(image.size_xyz[0]) + "x" +
                           std::to_string(image.size_xyz[1]) + "x" + std::to_string(image.size_xyz[2]) + " of " +
                           image.element_type + " (" + std::to_string(image.element_size) + " bytes each) needs " +
                           std::to_string(need) + " bytes (header " + image.header_path.filename().string() + ")");
}

// Inflates every zlib/gzip stream in `in` into `out` (image.nbytes bytes):
// writers may concatenate streams for large volumes. Inflates at most one
// byte beyond nbytes, enough to tell "too much data" without inflating a bomb.
void inflate_streams(const MetaImage& image, const uint8_t* in, size_t in_len, uint8_t* out) {
  const uint64_t want = static_cast<uint64_t>(image.nbytes);
  uint64_t produced = 0;
  size_t pos = 0;  // input bytes handed to zlib so far
  uint8_t spill = 0;
  auto fail = [&](const std::string& reason) -> void {
    throw MetaImageError(image.data_path, "CompressedData", reason);
  };
  while (pos < in_len && produced <= want) {
    z_stream stream{};
    // 15 + 32: zlib or gzip, detected from the stream's header, as MetaIO accepts.
    if (inflateInit2(&stream, 15 + 32) != Z_OK) fail("zlib could not start");
    std::unique_ptr<z_stream, int (*)(z_streamp)> guard(&stream, inflateEnd);
    for (;;) {
      if (stream.avail_in == 0 && pos < in_len) {
        const size_t chunk = std::min<size_t>(in_len - pos, UINT_MAX);
        stream.next_in = const_cast<Bytef*>(in + pos);
        stream.avail_in = static_cast<uInt>(chunk);
        pos += chunk;
      }
      if (stream.avail_out == 0) {
        if (produced < want) {
          stream.next_out = out + produced;
          stream.avail_out = static_cast<uInt>(std::min<uint64_t>(want - produced, UINT_MAX));
        } else {
          stream.next_out = &spill;
          stream.avail_out = 1;
        }
      }
      const uInt room = stream.avail_out;
      const int rc = inflate(&stream, Z_NO_FLUSH);
      produced += room - stream.avail_out;
      if (produced > want || rc == Z_STREAM_END) break;
      if (rc == Z_OK) continue;
      // Z_BUF_ERROR: no progress possible. There is always output room, so
      // the input ran out before the stream's end.
      if (rc == Z_BUF_ERROR) fail("compressed stream is truncated");
      fail(std::string("corrupt compressed data (") + (stream.msg ? stream.msg : zError(rc)) + ")");
    }
    pos -= stream.avail_in;  // bytes after this stream's end start the next one
  }
  if (produced != want) {
    size_error(image, produced > want ? "decompresses to more data" : "decompresses to " + std::to_string(produced) + " bytes", want);
  }
}

// Reverses the bytes of each of `n` UInt-sized elements in place (memcpy:
// the buffer need not be aligned).
template <typename UInt, UInt (*Swap)(UInt)>
void swap_each(uint8_t* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    UInt v;
    std::memcpy(&v, data + sizeof(UInt) * i, sizeof(UInt));
    v = Swap(v);
    std::memcpy(data + sizeof(UInt) * i, &v, sizeof(UInt));
  }
}

uint16_t bswap16(uint16_t v) { return __builtin_bswap16(v); }
uint32_t bswap32(uint32_t v) { return __builtin_bswap32(v); }
uint64_t bswap64(uint64_t v) { return __builtin_bswap64(v); }

void swap_to_native(const MetaImage& image, uint8_t* data) {
  if (!image.msb || image.element_size == 1 || std::endian::native == std::endian::big) return;
  const auto n = static_cast<size_t>(image.voxel_count);
  switch (image.element_size) {
    case 2:
      swap_each<uint16_t, bswap16>(data, n);
      break;
    case 4:
      swap_each<uint32_t, bswap32>(data, n);
      break;
    case 8:
      swap_each<uint64_t, bswap64>(data, n);
      break;
    default:
      throw std::logic_error("swap_to_native: element size " + std::to_string(image.element_size));
  }
}

}  // namespace

int element_size_of(std::string_view element_type) {
  for (const auto& type : kElementTypes) {
    if (element_type == type.name) return type.size;
  }
  return 0;
}

uint64_t max_inflated_size(uint64_t compressed_len) {
  // deflate's best case: a 258-byte match coded in 2 bits, i.e. 1032:1.
  constexpr uint64_t kRatio = 1032;
  if (compressed_len > (UINT64_MAX - 258) / kRatio) return UINT64_MAX;
  return compressed_len * kRatio + 258;
}

MetaImage parse_header(std::string_view text, const fs::path& path) {
  HeaderParser p(path);
  const int64_t header_bytes = p.read_fields(text);
  for (const char* key : {"NDims", "DimSize", "ElementSpacing", "ElementType", "ElementDataFile"}) p.require(key);

  MetaImage image;
  image.header_path = path;
  if (const auto* f = p.get("ObjectType"); f && f->second != "Image") {
    p.fail("ObjectType", "expected Image, got " + quote_value(f->second));
  }
  if (const auto& f = p.require("NDims"); f.second != "3") {
    p.fail(f.first, "only 3D scans are supported, got " + quote_value(f.second));
  }
  if (const auto* f = p.get("ElementNumberOfChannels"); f && f->second != "1") {
    p.fail(f->first, "only single-channel scans are supported, got " + quote_value(f->second));
  }
  if (const auto* f = p.get("BinaryData"); f && !p.boolean(*f)) {
    p.fail(f->first, "ASCII voxel data is not supported");
  }

  const auto& dim_field = p.require("DimSize");
  const auto dims = p.numbers<int64_t>(dim_field, 3);
  for (int k = 0; k < 3; ++k) {
    if (dims[k] <= 0) p.fail(dim_field.first, "sizes must be positive, got " + quote_value(dim_field.second));
    image.size_xyz[k] = dims[k];
  }
  const auto& spacing_field = p.require("ElementSpacing");
  const auto spacing = p.numbers<double>(spacing_field, 3);
  for (int k = 0; k < 3; ++k) {
    if (spacing[k] <= 0) p.fail(spacing_field.first, "spacings must be positive, got " + quote_value(spacing_field.second));
    image.spacing[k] = spacing[k];
  }
  if (const auto* f = p.get("Offset")) {
    const auto origin = p.numbers<double>(*f, 3);
    std::copy(origin.begin(), origin.end(), image.origin.begin());
  }
  image.direction = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  if (const auto* f = p.get("TransformMatrix")) {
    const auto m = p.numbers<double>(*f, 9);
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < 3; ++c) image.direction[3 * r + c] = m[3 * c + r];  // per-axis rows -> columns
    }
    const auto& d = image.direction;
    const double det = d[0] * (d[4] * d[8] - d[5] * d[7]) - d[1] * (d[3] * d[8] - d[5] * d[6]) +
                       d[2] * (d[3] * d[7] - d[4] * d[6]);
    if (!(std::abs(det) >= 1e-6)) p.fail(f->first, "matrix is singular: " + quote_value(f->second));
  }

  const auto& type_field = p.require("ElementType");
  image.element_size = element_size_of(type_field.second);
  if (image.element_size == 0) {
    std::string supported;
    for (const auto& type : kElementTypes) supported += (supported.empty() ? "" : ", ") + std::string(type.name);
    p.fail(type_field.first, "unknown or unsupported type " + quote_value(type_field.second) + " (supported: " + supported + ")");
  }
  image.element_type = type_field.second;
  if (const auto* f = p.get("ElementByteOrderMSB")) image.msb = p.boolean(*f);
  if (const auto* f = p.get("CompressedData")) image.compressed = p.boolean(*f);
  if (const auto* f = p.get("CompressedDataSize"); f && image.compressed) {
    const int64_t size = p.numbers<int64_t>(*f, 1)[0];
    if (size <= 0) p.fail(f->first, "expected a positive byte count, got " + quote_value(f->second));
    image.compressed_size = size;
  }
  if (const auto* f = p.get("HeaderSize")) {
    image.header_size = p.numbers<int64_t>(*f, 1)[0];
    if (image.header_size < -1 || (image.header_size == -1 && image.compressed)) {
      p.fail(f->first, "expected a byte count >= 0 (or -1 for uncompressed data), got " + quote_value(f->second));
    }
  }

  const auto& [file_key, file_value] = p.require("ElementDataFile");
  if (file_value == "LOCAL") {
    image.data_path = path;
    image.local_offset = header_bytes;
  } else if (file_value.empty() || file_value.rfind("LIST", 0) == 0 || file_value.find('%') != std::string::npos) {
    p.fail(file_key, "only one data file or LOCAL is supported, got " + quote_value(file_value));
  } else {
    image.data_path = path.parent_path() / file_value;
  }

  // Sizes in 64 bits, checked: DimSize 2^40 x 2^40 x 1 must be an error, not
  // a small number after wrapping.
  int64_t count = 1;
  for (const int64_t d : image.size_xyz) {
    if (__builtin_mul_overflow(count, d, &count)) count = -1;
    if (count < 0) break;
  }
  int64_t nbytes = -1;
  if (count < 0 || __builtin_mul_overflow(count, static_cast<int64_t>(image.element_size), &nbytes)) {
    p.fail(dim_field.first, "voxel count of " + quote_value(dim_field.second) + " times " +
                                std::to_string(image.element_size) + " bytes overflows 64 bits");
  }
  image.voxel_count = count;
  image.nbytes = nbytes;
  return image;
}

MetaImage read_header(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw MetaImageError(path, "header", "is a folder, not a .mhd file");
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!file) throw MetaImageError(path, "header", std::string("cannot open: ") + std::strerror(errno));
  // Enough for the longest header the parser accepts, plus one byte to see
  // that a line is too long: never the whole of a multi-GB file.
  std::string text(static_cast<size_t>(kMaxHeaderLines) * kMaxHeaderLineBytes + 1, '\0');
  const size_t got = std::fread(text.data(), 1, text.size(), file.get());
  if (std::ferror(file.get())) throw MetaImageError(path, "header", std::string("cannot read: ") + std::strerror(errno));
  text.resize(got);
  return parse_header(text, path);
}

DataSpan locate_data(const MetaImage& image, uint64_t file_size) {
  const auto nbytes = static_cast<uint64_t>(image.nbytes);
  const auto local = static_cast<uint64_t>(image.local_offset);
  if (!image.compressed) {
    if (image.header_size == -1) {  // MetaIO: the voxels are the last bytes of the file
      const uint64_t available = file_size > local ? file_size - local : 0;
      if (available < nbytes) size_error(image, "file has " + std::to_string(available) + " data bytes", nbytes);
      return {file_size - nbytes, nbytes};
    }
    uint64_t start = 0;
    if (__builtin_add_overflow(local, static_cast<uint64_t>(image.header_size), &start) || start > file_size) {
      size_error(image, "file has " + std::to_string(file_size) + " bytes, fewer than its header (" +
                            std::to_string(local) + " + HeaderSize " + std::to_string(image.header_size) + ")",
                 nbytes);
    }
    if (file_size - start != nbytes) {
      size_error(image, "file has " + std::to_string(file_size - start) + " data bytes after " +
                            std::to_string(start) + " header bytes", nbytes);
    }
    return {start, nbytes};
  }
  uint64_t start = 0;
  if (__builtin_add_overflow(local, static_cast<uint64_t>(image.header_size), &start)) start = UINT64_MAX;
  uint64_t available = file_size > start ? file_size - start : 0;
  if (image.compressed_size) {
    // MetaIO reads exactly CompressedDataSize bytes (and ignores the rest).
    const auto declared = static_cast<uint64_t>(*image.compressed_size);
    if (available < declared) {
      throw MetaImageError(image.data_path, "CompressedDataSize",
                           "header " + image.header_path.filename().string() + " says " + std::to_string(declared) +
                               " bytes, the file has " + std::to_string(available));
    }
    available = declared;
  }
  if (nbytes > max_inflated_size(available)) {
    size_error(image, std::to_string(available) + " compressed bytes can hold at most " +
                          std::to_string(max_inflated_size(available)) + " bytes", nbytes);
  }
  return {available ? start : 0, available};
}

void decode_data(const MetaImage& image, const uint8_t* stored, size_t stored_len, uint8_t* out) {
  if (image.compressed) {
    inflate_streams(image, stored, stored_len, out);
  } else {
    if (stored_len != static_cast<uint64_t>(image.nbytes)) {
      throw std::invalid_argument("decode_data: " + std::to_string(stored_len) + " stored bytes for " +
                                  std::to_string(image.nbytes) + " bytes of voxels");
    }
    if (stored != out) std::memmove(out, stored, stored_len);
  }
  swap_to_native(image, out);
}

#ifndef TORCHLITE_MHD_NO_TORCH
namespace {

uint64_t data_file_size(const MetaImage& image) {
  std::error_code ec;
  const auto status = fs::status(image.data_path, ec);
  if (!fs::exists(status)) {
    throw MetaImageError(image.header_path, "ElementDataFile",
                         "data file " + image.data_path.string() + " does not exist");
  }
  if (!fs::is_regular_file(status)) {
    throw MetaImageError(image.header_path, "ElementDataFile",
                         "data file " + image.data_path.string() + " is not a regular file");
  }
  const uintmax_t size = fs::file_size(image.data_path, ec);
  if (ec) {
    throw MetaImageError(image.header_path, "ElementDataFile",
                         "cannot stat " + image.data_path.string() + ": " + ec.message());
  }
  return size;
}

void read_exactly(const MetaImage& image, DataSpan span, uint8_t* out) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(image.data_path.c_str(), "rb"), std::fclose);
  auto fail = [&](const std::string& what) {
    throw MetaImageError(image.data_path, "ElementDataFile", what);
  };
  if (!file) fail(std::string("cannot open: ") + std::strerror(errno));
  if (span.offset > static_cast<uint64_t>(LLONG_MAX) ||
      fseeko(file.get(), static_cast<off_t>(span.offset), SEEK_SET) != 0) {
    fail("cannot seek to byte " + std::to_string(span.offset));
  }
  uint64_t done = 0;
  while (done < span.length) {
    const size_t got = std::fread(out + done, 1, static_cast<size_t>(span.length - done), file.get());
    if (got == 0) {
      fail("read " + std::to_string(done) + " of " + std::to_string(span.length) + " bytes" +
           (std::ferror(file.get()) ? std::string(": ") + std::strerror(errno) : " (the file shrank while reading)"));
    }
    done += got;
  }
}

template <typename T>
void widen_to_float(const uint8_t* raw, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, raw + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
    out[i] = static_cast<float>(v);
  }
}

}  // namespace

at::Tensor read_volume(const MetaImage& image) {
  const DataSpan span = locate_data(image, data_file_size(image));
  const auto shape = image.shape_zyx();
  const std::vector<int64_t> sizes(shape.begin(), shape.end());
  const bool as_int16 = image.element_type == "MET_SHORT";

  // Voxels are decoded straight into the result when it keeps the file's
  // type (MET_SHORT), else into a buffer that is then widened to float32.
  at::Tensor result = as_int16 ? at::empty(sizes, at::kShort) : at::empty(sizes, at::kFloat);
  std::vector<uint8_t> buffer;
  uint8_t* voxels = nullptr;
  if (as_int16) {
    voxels = static_cast<uint8_t*>(result.data_ptr());
  } else {
    buffer.resize(static_cast<size_t>(image.nbytes));
    voxels = buffer.data();
  }
  if (image.compressed) {
    std::vector<uint8_t> stored(static_cast<size_t>(span.length));
    read_exactly(image, span, stored.data());
    decode_data(image, stored.data(), stored.size(), voxels);
  } else {
    read_exactly(image, span, voxels);
    decode_data(image, voxels, static_cast<size_t>(span.length), voxels);
  }
  if (as_int16) return result;

  float* out = result.data_ptr<float>();
  const int64_t n = image.voxel_count;
  const std::string& t = image.element_type;
  if (t == "MET_CHAR") widen_to_float<int8_t>(voxels, out, n);
  else if (t == "MET_UCHAR") widen_to_float<uint8_t>(voxels, out, n);
  else if (t == "MET_USHORT") widen_to_float<uint16_t>(voxels, out, n);
  else if (t == "MET_INT" || t == "MET_LONG") widen_to_float<int32_t>(voxels, out, n);
  else if (t == "MET_UINT" || t == "MET_ULONG") widen_to_float<uint32_t>(voxels, out, n);
  else if (t == "MET_LONG_LONG") widen_to_float<int64_t>(voxels, out, n);
  else if (t == "MET_ULONG_LONG") widen_to_float<uint64_t>(voxels, out, n);
  else if (t == "MET_FLOAT") std::memcpy(out, voxels, static_cast<size_t>(image.nbytes));
  else if (t == "MET_DOUBLE") widen_to_float<double>(voxels, out, n);
  else throw std::logic_error("read_volume: no conversion for " + t);
  return result;
}
#endif  // TORCHLITE_MHD_NO_TORCH

}  // namespace torchlite::app

// MetaImage (.mhd) reading for the C++ program, without ITK.
//
// The same rules as the Python reader torchlite/data/metaimage.py, so a scan
// that one accepts the other accepts, with the same geometry and voxels:
//  - `Key = Value` lines, keys case-sensitive, ending with ElementDataFile
//    (LOCAL: the voxels follow the header in the same file); at most 200
//    lines of at most 4096 bytes, so pointing the reader at a multi-GB binary
//    fails fast instead of reading it as text.
//  - synonyms: Offset/Origin/Position, TransformMatrix/Orientation/Rotation,
//    ElementByteOrderMSB/BinaryDataByteOrderMSB; a field given twice (under
//    any of its names) is an error.
//  - required: NDims (= 3), DimSize, ElementSpacing (> 0; MetaIO would
//    default it, but a CT without spacing is a broken CT), ElementType,
//    ElementDataFile. Optional fields take MetaIO's defaults.
//  - TransformMatrix is written row by row *per axis* (row k = direction of
//    axis k), the transpose of SimpleITK's GetDirection(); `direction` here is
//    SimpleITK's matrix, row-major, as in torchlite.data.geometry.
//  - HeaderSize bytes are skipped in the data file; -1 means the voxels are
//    the last bytes of the file (uncompressed data only).
//  - CompressedData = True: zlib or gzip streams (possibly concatenated), at
//    most CompressedDataSize bytes of them when that field is given.
//
// Every problem raises MetaImageError with "<file>: <field>: <reason>". Sizes
// are overflow-checked, the data file's size is checked against DimSize before
// anything is read, and nothing larger than the data file justifies is
// allocated (compressed data: at most zlib's maximum ratio times its size).
//
// Compiled with TORCHLITE_MHD_NO_TORCH (the fuzz target), only the torch-free
// part is built: parsing, locating and decoding the bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#ifndef TORCHLITE_MHD_NO_TORCH
#include <ATen/core/Tensor.h>
#endif

namespace torchlite::app {

class MetaImageError : public std::runtime_error {
 public:
  MetaImageError(const std::filesystem::path& file, std::string field, std::string reason);
  const std::filesystem::path& file() const { return file_; }
  const std::string& field() const { return field_; }
  const std::string& reason() const { return reason_; }

 private:
  std::filesystem::path file_;
  std::string field_;
  std::string reason_;
};

// Bounds on a header: a real one is a few hundred bytes.
inline constexpr size_t kMaxHeaderLineBytes = 4096;  // including the newline
inline constexpr int kMaxHeaderLines = 200;

struct MetaImage {
  std::filesystem::path header_path;
  std::array<int64_t, 3> size_xyz{};     // DimSize: X, Y, Z (the array is Z, Y, X)
  std::array<double, 3> spacing{};       // mm, X Y Z
  std::array<double, 3> origin{};        // mm, X Y Z
  std::array<double, 9> direction{};     // row-major, SimpleITK's GetDirection()
  std::string element_type;              // "MET_SHORT", ...
  int element_size = 0;                  // bytes per voxel
  bool msb = false;                      // big-endian data
  bool compressed = false;
  std::optional<int64_t> compressed_size;  // CompressedDataSize, when given
  int64_t header_size = 0;               // bytes to skip; -1: data ends the file
  std::filesystem::path data_path;       // the header itself for LOCAL
  int64_t local_offset = 0;              // LOCAL: bytes of header text before the data
  int64_t voxel_count = 0;               // X*Y*Z, checked not to overflow
  int64_t nbytes = 0;                    // voxel_count * element_size, likewise

  std::array<int64_t, 3> shape_zyx() const { return {size_xyz[2], size_xyz[1], size_xyz[0]}; }
};

// Element types MetaIO names and this reader supports, with their sizes.
// MET_LONG is 4 bytes in MetaIO, whatever C's long is.
int element_size_of(std::string_view element_type);  // 0 when unknown

// Parses header text (the file's first bytes; anything after ElementDataFile
// is ignored). `path` names the file in errors and anchors relative
// ElementDataFile paths.
MetaImage parse_header(std::string_view text, const std::filesystem::path& path);

// Reads and parses the header of the .mhd file at `path`.
MetaImage read_header(const std::filesystem::path& path);

// Where the stored data lies in the data file, given that file's size: for
// uncompressed data exactly the voxels (length == nbytes), for compressed data
// the compressed bytes. Raises when the file's size disagrees with DimSize.
struct DataSpan {
  uint64_t offset = 0;
  uint64_t length = 0;
};
DataSpan locate_data(const MetaImage& image, uint64_t data_file_size);

// Turns the stored bytes (those locate_data pointed at) into `image.nbytes`
// bytes of voxels in native byte order at `out`: copies or inflates, then
// byte-swaps big-endian data. `stored` may alias `out` for uncompressed data.
void decode_data(const MetaImage& image, const uint8_t* stored, size_t stored_len, uint8_t* out);

// The largest output zlib can produce from `compressed_len` input bytes, for
// refusing decompression bombs before allocating (deflate tops out near
// 1032:1; gzip and zlib wrappers only add bytes to the input).
uint64_t max_inflated_size(uint64_t compressed_len);

#ifndef TORCHLITE_MHD_NO_TORCH
// The voxels as a (Z, Y, X) = (I, R, C) tensor: int16 for MET_SHORT (the
// LUNA16 type, as stored), float32 for every other type. float32 holds
// MET_CHAR/UCHAR/SHORT/USHORT exactly and MET_INT/UINT/LONG/LONG_LONG values
// up to 2^24 in magnitude exactly (CT values are within a few thousand HU;
// the analysis clips to [-1000, 1000] anyway); MET_DOUBLE is rounded.
at::Tensor read_volume(const MetaImage& image);
#endif

}  // namespace torchlite::app

// A small JSON reader and writer helpers for torchlite-app.
//
// The app reads one JSON file, the export's manifest.json (a few KB), and
// writes two small outputs; LibTorch bundles no JSON library, and a new
// system dependency for this is not worth it. The reader is strict
// (RFC 8259: no comments, no trailing commas, no NaN) and bounded in depth,
// so a hostile file cannot overflow the stack.
#pragma once

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace torchlite::app {

class JsonError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Json {
 public:
  enum class Kind { Null, Bool, Number, String, Array, Object };

  Json() = default;
  static Json parse(std::string_view text);  // raises JsonError "line L column C: reason"

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_number() const { return kind_ == Kind::Number; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }

  // Typed access; a value of another kind raises JsonError naming the kinds.
  bool as_bool() const;
  double as_number() const;
  const std::string& as_string() const;
  const std::vector<Json>& as_array() const;
  const std::map<std::string, Json>& as_object() const;

  // Object member, or nullptr when absent (or when this is not an object).
  const Json* find(const std::string& key) const;

  static const char* kind_name(Kind kind);

 private:
  friend class JsonParser;
  Kind kind_ = Kind::Null;
  bool bool_ = false;
  double number_ = 0.0;
  std::string string_;
  std::vector<Json> array_;
  std::map<std::string, Json> object_;
};

// Writing: a JSON string literal (escaped), and a number as the shortest
// text that reads back to the same double, as Python's repr() and json.dump
// write floats (so outputs compare textually with `torchlite analyze`'s);
// NaN and infinities, which JSON lacks, become null.
std::string json_quote(std::string_view s);
std::string json_number(double v);
// The shortest round-trip text of v (as Python's repr(float)), e.g. "0.5",
// "1e-05", "-3.0" (always with a '.' or an exponent, as Python writes floats).
std::string repr_double(double v);

}  // namespace torchlite::app

// json-c with RAII and checked field access: one helper for the exec protocol's messages, the
// VM's state files (vm/), the accounting record and report (accounting/) and the catalog.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <json-c/json.h>

namespace svm {

struct JsonPut {
    void operator()(json_object *obj) const { json_object_put(obj); }
};
using JsonPtr = std::unique_ptr<json_object, JsonPut>;

struct JsonTokenerFree {
    void operator()(json_tokener *tok) const { json_tokener_free(tok); }
};
using JsonTokenerPtr = std::unique_ptr<json_tokener, JsonTokenerFree>;

JsonPtr json_new_object();
// Adds value to obj under key; takes ownership of value.
void json_set(json_object *obj, const char *key, JsonPtr value);
JsonPtr json_from_string(std::string_view s);
JsonPtr json_from_int(std::int64_t v);
JsonPtr json_from_bool(bool v);
std::string json_to_text(json_object *obj);

// Parses text that must be exactly one JSON object. Errors name `what`
// (e.g. "EXEC request") and throw FormatError.
JsonPtr parse_json_object(std::string_view text, const std::string &what);

// Checked accessors: a missing field, a wrong type or a value out of range throws
// FormatError "<what>: field '<key>': <reason>". The returned pointers are borrowed.
json_object *json_field(json_object *obj, const char *key, const std::string &what);
// nullptr when absent or null.
json_object *json_optional_field(json_object *obj, const char *key);
// nullopt when absent, a null pointer for an explicit JSON null (which a reader may refuse).
std::optional<json_object *> json_member(json_object *obj, const char *key);
std::string json_string_value(json_object *value, const std::string &what);
std::int64_t json_int_value(json_object *value, std::int64_t min, std::int64_t max,
                            const std::string &what);
bool json_bool_value(json_object *value, const std::string &what);
json_object *json_array_value(json_object *value, const std::string &what);

// A short rendering of a value for error messages.
std::string json_excerpt(json_object *value);

}  // namespace svm

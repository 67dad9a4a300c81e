#include "util/json.h"

#include "util/error.h"

namespace svm {

JsonPtr json_new_object() {
    return JsonPtr(json_object_new_object());
}

void json_set(json_object *obj, const char *key, JsonPtr value) {
    json_object_object_add(obj, key, value.release());
}

JsonPtr json_from_string(std::string_view s) {
    return JsonPtr(json_object_new_string_len(s.data(), static_cast<int>(s.size())));
}

JsonPtr json_from_int(std::int64_t v) {
    return JsonPtr(json_object_new_int64(v));
}

JsonPtr json_from_bool(bool v) {
    return JsonPtr(json_object_new_boolean(v ? 1 : 0));
}

std::string json_to_text(json_object *obj) {
    return json_object_to_json_string_ext(obj,
                                          JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

JsonPtr parse_json_object(std::string_view text, const std::string &what) {
    JsonTokenerPtr tok(json_tokener_new());
    if (!tok) {
        throw FormatError(what + ": out of memory parsing JSON");
    }
    JsonPtr obj(json_tokener_parse_ex(tok.get(), text.data(), static_cast<int>(text.size())));
    json_tokener_error err = json_tokener_get_error(tok.get());
    if (err == json_tokener_continue) {
        throw FormatError(what + ": invalid JSON: unexpected end of input");
    }
    if (err != json_tokener_success || !obj) {
        throw FormatError(what + ": invalid JSON: " + json_tokener_error_desc(err));
    }
    std::size_t end = json_tokener_get_parse_end(tok.get());
    while (end < text.size() &&
           (text[end] == ' ' || text[end] == '\n' || text[end] == '\t' || text[end] == '\r')) {
        ++end;
    }
    if (end != text.size()) {
        throw FormatError(what + ": invalid JSON: trailing bytes after the object");
    }
    if (!json_object_is_type(obj.get(), json_type_object)) {
        throw FormatError(what + ": expected a JSON object, got " + json_excerpt(obj.get()));
    }
    return obj;
}

json_object *json_optional_field(json_object *obj, const char *key) {
    json_object *value = nullptr;
    if (!json_object_object_get_ex(obj, key, &value)) {
        return nullptr;
    }
    return value;
}

std::optional<json_object *> json_member(json_object *obj, const char *key) {
    json_object *value = nullptr;
    if (!json_object_object_get_ex(obj, key, &value)) {
        return std::nullopt;
    }
    return value;
}

json_object *json_field(json_object *obj, const char *key, const std::string &what) {
    json_object *value = nullptr;
    if (!json_object_object_get_ex(obj, key, &value)) {
        throw FormatError(what + ": missing field '" + key + "'");
    }
    return value;
}

std::string json_excerpt(json_object *value) {
    if (!value) {
        return "null";
    }
    std::string text = json_to_text(value);
    if (text.size() > 40) {
        text = text.substr(0, 37) + "...";
    }
    return text;
}

std::string json_string_value(json_object *value, const std::string &what) {
    if (!json_object_is_type(value, json_type_string)) {
        throw FormatError(what + ": expected a string, got " + json_excerpt(value));
    }
    return std::string(json_object_get_string(value),
                       static_cast<std::size_t>(json_object_get_string_len(value)));
}

std::int64_t json_int_value(json_object *value, std::int64_t min, std::int64_t max,
                            const std::string &what) {
    if (!json_object_is_type(value, json_type_int)) {
        throw FormatError(what + ": expected an integer, got " + json_excerpt(value));
    }
    // json-c keeps integers above INT64_MAX as uint64 and clamps get_int64 to INT64_MAX,
    // which the range check below then refuses.
    std::int64_t v = json_object_get_int64(value);
    if (v < min || v > max) {
        throw FormatError(what + ": expected an integer from " + std::to_string(min) + " to " +
                          std::to_string(max) + ", got " + json_excerpt(value));
    }
    return v;
}

bool json_bool_value(json_object *value, const std::string &what) {
    if (!json_object_is_type(value, json_type_boolean)) {
        throw FormatError(what + ": expected true or false, got " + json_excerpt(value));
    }
    return json_object_get_boolean(value) != 0;
}

json_object *json_array_value(json_object *value, const std::string &what) {
    if (!json_object_is_type(value, json_type_array)) {
        throw FormatError(what + ": expected an array, got " + json_excerpt(value));
    }
    return value;
}

}  // namespace svm

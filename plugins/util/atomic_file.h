// Files that are either wholly old or wholly new after a crash: accounting records and the
// VM-to-host map must never be left half-written.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

namespace svm {

// Writes content to a temporary file beside `path`, fsyncs it, renames it over `path` and
// fsyncs the folder. Throws Error naming `path` and the system's reason; the temporary file
// is removed on failure.
void write_file_atomically(const std::string &path, std::string_view content, mode_t mode);

// The whole content of `path`. Throws Error naming the path and the reason.
std::string read_whole_file(const std::string &path);

}  // namespace svm

// Image names are what users type (`--vm-image=NAME`) and what becomes a Slurm node feature, so
// the syntax is strict: it must survive #SBATCH lines (no '#'), file paths (no '/', no ".."),
// Slurm's constraint grammar and libvirt domain names.
#pragma once

#include "util/text.h"  // printable(), which callers of this header use for names

#include <optional>
#include <string>
#include <string_view>

namespace svm {

// Longest valid image name: the feature "vm_<name>" and the domain name stay well below limits.
inline constexpr std::size_t max_image_name_length = 64;

// "" when `name` matches [A-Za-z0-9][A-Za-z0-9._-]{0,63} and has no "..", else a short reason
// ("contains '/'") meant to follow "image name 'x' is invalid: ".
std::string image_name_problem(std::string_view name);

// The node feature that marks nodes carrying the image: "vm_" + name. A job asks for the image
// by this constraint, so the scheduler alone decides where it may run.
std::string image_feature(std::string_view name);

// The image a node feature stands for, or nothing when the feature is not one of ours.
std::optional<std::string> image_from_feature(std::string_view feature);

}  // namespace svm

#include "catalog/image_features.h"

#include "util/config.h"

#include "util/error.h"
#include "catalog/image_name.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <set>

namespace svm {

namespace {

constexpr const char *default_catalog = "/etc/slurm/vm-images.json";
constexpr std::string_view node_placeholder = "%n";

// One token of a Slurm 22.05 constraint (src/slurmctld/job_scheduler.c, build_feature_list):
// feature names, the operators '&' (',' is read as '&'), '|', and the groups "(...)" and
// "[...]"; "*N" after a name is a node count.
enum class Kind { Term, And, Or, Open, Close };

struct Token {
    Kind kind;
    std::string text;  // the feature name, for terms
    int depth;         // groups around the token; 0 is the top level
    bool counted = false;
};

struct Constraint {
    std::vector<Token> tokens;
    bool has_or = false;
    bool has_parens = false;
    bool has_brackets = false;
    bool has_counts = false;
};

// Tokenizes without judging: Slurm itself rejects malformed constraints at submit, and whatever
// we append stays at the top level, so a malformed constraint stays malformed, never weaker.
Constraint tokenize(std::string_view text) {
    Constraint c;
    std::string name;
    int depth = 0;
    const auto flush = [&] {
        if (!name.empty()) {
            c.tokens.push_back({Kind::Term, name, depth});
            name.clear();
        }
    };
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char ch = text[i];
        switch (ch) {
            case '&':
            case ',':
                flush();
                c.tokens.push_back({Kind::And, "", depth});
                break;
            case '|':
                flush();
                c.has_or = true;
                c.tokens.push_back({Kind::Or, "", depth});
                break;
            case '(':
            case '[':
                flush();
                (ch == '(' ? c.has_parens : c.has_brackets) = true;
                c.tokens.push_back({Kind::Open, "", depth});
                ++depth;
                break;
            case ')':
            case ']':
                flush();
                depth = std::max(0, depth - 1);
                c.tokens.push_back({Kind::Close, "", depth});
                break;
            case '*':
                flush();
                c.has_counts = true;
                if (!c.tokens.empty() && c.tokens.back().kind == Kind::Term) {
                    c.tokens.back().counted = true;
                }
                while (i + 1 < text.size() &&
                       std::isdigit(static_cast<unsigned char>(text[i + 1]))) {
                    ++i;
                }
                break;
            default:
                name += ch;
        }
    }
    flush();
    return c;
}

// Whether the term at `index` must hold on every node of the job. Slurm evaluates the top level
// left to right ("a|b&c" is "(a|b)&c"), so a top-level term is required when it is AND-ed to
// what precedes it and nothing after it is OR-ed at the top level.
bool is_required(const Constraint &c, std::size_t index) {
    const Token &term = c.tokens[index];
    if (term.depth != 0 || term.counted) {
        return false;
    }
    if (index > 0 && c.tokens[index - 1].kind != Kind::And) {
        return false;
    }
    return std::none_of(c.tokens.begin() + static_cast<long>(index) + 1, c.tokens.end(),
                        [](const Token &t) { return t.kind == Kind::Or && t.depth == 0; });
}

std::string quoted(const std::string &features) {
    return "--constraint '" + printable(features) + "'";
}

std::string expand_node(const std::string &path, std::string_view node, const Image &image) {
    if (path.find(node_placeholder) == std::string::npos) {
        return path;
    }
    const std::string problem = node_name_problem(node);
    if (!problem.empty()) {
        throw Error("image '" + image.name + "': node name '" + printable(node) +
                    "' cannot stand for %n in " + path + ": it " + problem);
    }
    std::string out;
    std::size_t from = 0;
    for (std::size_t at; (at = path.find(node_placeholder, from)) != std::string::npos;
         from = at + node_placeholder.size()) {
        out.append(path, from, at - from);
        out += node;
    }
    out.append(path, from);
    return out;
}

bool is_readable_file(const std::string &path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), R_OK) == 0;
}

}  // namespace

std::string catalog_path_from_environment() {
    const char *env = std::getenv("SLURM_VM_CATALOG");
    return env != nullptr && *env != '\0' ? env : default_catalog;
}

Image resolve_for_node(const Image &image, std::string_view node) {
    Image resolved = image;
    resolved.kernel = expand_node(image.kernel, node, image);
    resolved.initrd = expand_node(image.initrd, node, image);
    resolved.disk = expand_node(image.disk, node, image);
    return resolved;
}

std::vector<std::string> images_present_on_node(const Catalog &catalog, std::string_view node) {
    std::vector<std::string> present;
    for (const Image &image : catalog.images()) {
        const Image resolved = resolve_for_node(image, node);
        bool usable = true;
        for (const std::string *path : {&resolved.kernel, &resolved.initrd, &resolved.disk}) {
            if (!path->empty() && !is_readable_file(*path)) {
                usable = false;
            }
        }
        if (usable) {
            present.push_back(image.name);
        }
    }
    return present;
}

std::string merge_node_features(const std::string &configured,
                                const std::vector<std::string> &image_features) {
    std::vector<std::string> merged;
    std::set<std::string> seen;
    const auto add = [&](const std::string &feature) {
        if (!feature.empty() && seen.insert(feature).second) {
            merged.push_back(feature);
        }
    };
    std::size_t from = 0;
    while (from <= configured.size()) {
        const std::size_t comma = std::min(configured.find(',', from), configured.size());
        const std::string feature = configured.substr(from, comma - from);
        if (!image_from_feature(feature)) {
            add(feature);
        }
        from = comma + 1;
    }
    for (const std::string &feature : image_features) {
        add(feature);
    }
    std::string out;
    for (const std::string &feature : merged) {
        out += (out.empty() ? "" : ",") + feature;
    }
    return out;
}

std::vector<std::string> image_features_in(const std::string &features) {
    std::vector<std::string> found;
    std::size_t from = 0;
    while (from <= features.size()) {
        const std::size_t comma = std::min(features.find(',', from), features.size());
        std::string feature = features.substr(from, comma - from);
        if (image_from_feature(feature) &&
            std::find(found.begin(), found.end(), feature) == found.end()) {
            found.push_back(std::move(feature));
        }
        from = comma + 1;
    }
    return found;
}

namespace {

// A Slurm node name as it can stand in this file: no space, comma or control character.
bool plain_node_name(std::string_view name) {
    if (name.empty() || name.size() > 255) {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [](unsigned char c) {
        return std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.';
    });
}

}  // namespace

std::string render_known_image_features(const KnownImageFeatures &known) {
    std::string out;
    for (const auto &[node, features] : known) {
        if (!plain_node_name(node)) {
            continue;
        }
        std::string list;
        for (const std::string &feature : features) {
            if (image_from_feature(feature)) {
                list += (list.empty() ? "" : ",") + feature;
            }
        }
        out += node + " " + (list.empty() ? "-" : list) + "\n";
    }
    return out;
}

KnownImageFeatures parse_known_image_features(std::string_view text) {
    KnownImageFeatures known;
    std::size_t from = 0;
    while (from < text.size()) {
        const std::size_t end = std::min(text.find('\n', from), text.size());
        const std::string_view line = text.substr(from, end - from);
        from = end + 1;
        const std::size_t space = line.find(' ');
        if (space == std::string_view::npos || !plain_node_name(line.substr(0, space))) {
            continue;
        }
        const std::string list(line.substr(space + 1));
        std::vector<std::string> features;
        if (list != "-") {
            features = image_features_in(list);
            // Every item must be an image feature: anything else means a damaged line.
            if (features.empty() ||
                std::count(list.begin(), list.end(), ',') + 1 !=
                    static_cast<std::ptrdiff_t>(features.size())) {
                continue;
            }
        }
        known[std::string(line.substr(0, space))] = std::move(features);
    }
    return known;
}

std::string restore_image_features(const std::string &features,
                                   const std::vector<std::string> &known) {
    if (!image_features_in(features).empty() || known.empty()) {
        return features;
    }
    return merge_node_features(features, known);
}

std::string drop_unreported_image_features(const std::string &active,
                                           const std::vector<std::string> &reported) {
    std::vector<std::string> kept;
    for (std::string &feature : image_features_in(active)) {
        if (std::find(reported.begin(), reported.end(), feature) != reported.end()) {
            kept.push_back(std::move(feature));
        }
    }
    return merge_node_features(active, kept);
}

std::string add_image_constraint(const std::string &features, std::string_view image) {
    const std::string problem = image_name_problem(image);
    if (!problem.empty()) {
        throw Error("image name '" + printable(image) + "' is invalid: " + problem);
    }
    const std::string feature = image_feature(image);
    if (features.empty()) {
        return feature;
    }
    const Constraint c = tokenize(features);
    bool required = false;
    for (std::size_t i = 0; i < c.tokens.size(); ++i) {
        const Token &t = c.tokens[i];
        if (t.kind != Kind::Term || !image_from_feature(t.text)) {
            continue;
        }
        if (t.text != feature) {
            throw Error("--constraint asks for image feature " + printable(t.text) +
                        " but --vm-image=" + std::string(image) + " (one VM image per job)");
        }
        if (!is_required(c, i)) {
            throw Error(quoted(features) + ": image feature " + feature +
                        " must be AND-ed at the top level, not OR-ed, counted, bracketed or in "
                        "parentheses; --vm-image=" +
                        std::string(image) + " adds it by itself");
        }
        required = true;
    }
    if (c.has_counts) {
        throw Error(quoted(features) +
                    ": node counts ('*') cannot be combined with --vm-image=" + std::string(image) +
                    " (Slurm would not hold the counted nodes to the image's feature)");
    }
    if (required) {
        return features;
    }
    if (c.has_or && !c.has_parens && !c.has_brackets) {
        return "(" + features + ")&" + feature;
    }
    return features + "&" + feature;
}

std::optional<std::string> image_from_constraint(const std::string &features) {
    const Constraint c = tokenize(features);
    std::optional<std::string> image;
    for (std::size_t i = 0; i < c.tokens.size(); ++i) {
        const Token &t = c.tokens[i];
        const auto named = t.kind == Kind::Term ? image_from_feature(t.text) : std::nullopt;
        if (!named) {
            continue;
        }
        if (!is_required(c, i)) {
            throw Error(quoted(features) + ": image feature " + t.text +
                        " selects the job's VM image and must be AND-ed at the top level, not "
                        "OR-ed, counted, bracketed or in parentheses (or use --vm-image=" +
                        *named + ")");
        }
        if (image && *image != *named) {
            throw Error(quoted(features) + " asks for image features " + image_feature(*image) +
                        " and " + t.text + ": one VM image per job");
        }
        image = named;
    }
    return image;
}

}  // namespace svm

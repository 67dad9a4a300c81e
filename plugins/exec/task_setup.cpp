#include "exec/task_setup.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/error.h"
#include "util/fd.h"
#include "util/spawn.h"

namespace svm {

namespace {

constexpr std::size_t kMaxArgc = 128;  // Slurm's MAX_ARGC: at most 127 words

bool is_space(char c) {
    return std::isspace(static_cast<unsigned char>(c)) != 0;
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// C's atoi: optional spaces and sign, then digits; 0 for none.
long c_atoi(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size() && is_space(s[i])) {
        ++i;
    }
    bool negative = false;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
        negative = s[i] == '-';
        ++i;
    }
    long v = 0;
    for (; i < s.size() && is_digit(s[i]) && v < 100000000; ++i) {
        v = v * 10 + (s[i] - '0');
    }
    return negative ? -v : v;
}

// slurmstepd's _in_range: whether `rank` is in `spec`, and its offset there.
bool in_range(int rank, std::string_view spec, int &offset) {
    if (spec == "*") {
        offset = rank;
        return true;
    }
    long passed = 0;
    std::size_t start = 0;
    while (start < spec.size()) {
        std::size_t end = spec.find(',', start);
        if (end == std::string_view::npos) {
            end = spec.size();
        }
        const std::string_view range = spec.substr(start, end - start);
        start = end + 1;
        if (range.empty()) {
            continue;  // strtok skips empty fields
        }
        std::size_t p = 0;
        while (p < range.size() && is_digit(range[p])) {
            ++p;
        }
        if (p == range.size()) {
            if (rank == c_atoi(range)) {
                offset = static_cast<int>(passed);
                return true;
            }
            ++passed;
        } else if (range[p] == '-') {
            std::size_t q = p + 1;
            while (q < range.size() && is_digit(range[q])) {
                ++q;
            }
            if (q != range.size()) {
                continue;  // "Invalid task range specification ignored"
            }
            const long low = c_atoi(range);
            const long high = c_atoi(range.substr(p + 1));
            if (rank >= low && rank <= high) {
                offset = static_cast<int>(passed + (rank - low));
                return true;
            }
            passed += 1 + high - low;
        }
    }
    return false;
}

// Splits conf into lines as strtok(..., "\n") does: empty lines vanish.
std::vector<std::string_view> conf_lines(std::string_view conf) {
    std::vector<std::string_view> lines;
    std::size_t start = 0;
    while (start < conf.size()) {
        std::size_t end = conf.find('\n', start);
        if (end == std::string_view::npos) {
            end = conf.size();
        }
        if (end > start) {
            lines.push_back(conf.substr(start, end - start));
        }
        start = end + 1;
    }
    return lines;
}

}  // namespace

bool is_multi_prog_argv(const std::vector<std::string> &argv,
                        const std::optional<std::string> &file_text) {
    return argv.size() >= 2 && file_text && argv[1] == *file_text;
}

std::optional<std::string> multi_prog_file_text(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return std::nullopt;
    }
    std::string text(60001, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in.gcount()));
    return text;
}

MultiProgResult multi_prog_argv(std::string_view conf, int rank,
                                const std::vector<std::string> &extra) {
    MultiProgResult result;
    if (rank < 0) {
        result.error = "invalid task rank " + std::to_string(rank);
        return result;
    }
    const std::vector<std::string_view> lines = conf_lines(conf);
    bool last_line_break = false;
    for (std::size_t li = 0; li < lines.size(); ++li) {
        const std::string_view line = lines[li];
        const int line_num = static_cast<int>(li) + 1;
        const bool line_break = !line.empty() && line.back() == '\\';
        if (last_line_break) {
            last_line_break = line_break;
            continue;  // the rest of the previous line
        }
        last_line_break = line_break;
        std::size_t p = 0;
        while (p < line.size() && is_space(line[p])) {
            ++p;
        }
        if (p == line.size() || line[p] == '#') {
            continue;
        }
        const std::size_t spec_start = p;
        while (p < line.size() && !is_space(line[p])) {
            ++p;
        }
        if (p == line.size()) {
            result.error = "line " + std::to_string(line_num) + ": no program after the task ranks";
            return result;
        }
        int offset = 0;
        if (!in_range(rank, line.substr(spec_start, p - spec_start), offset)) {
            continue;
        }
        while (p < line.size() && is_space(line[p])) {
            ++p;
        }
        // The words of the line: the text from p on, continued on the following lines where a
        // backslash ends one.
        std::vector<std::string> words;
        std::optional<std::string> word;
        std::string_view text = line.substr(p);
        std::size_t next_line = li + 1;
        std::size_t i = 0;
        const auto continue_line = [&]() -> bool {
            if (next_line >= lines.size()) {
                return false;
            }
            text = lines[next_line++];
            i = 0;
            return true;
        };
        bool full = false;
        while (i < text.size() && !full) {
            if (word) {
                words.push_back(std::move(*word));
                word.reset();
            }
            if (words.size() + 1 >= kMaxArgc) {
                full = true;
                break;
            }
            for (;;) {
                const std::size_t s = i;
                while (i < text.size() && text[i] != '\\' && text[i] != '%' && text[i] != '\'' &&
                       !is_space(text[i])) {
                    ++i;
                }
                if (!word) {
                    word.emplace();
                }
                word->append(text.substr(s, i - s));
                if (i == text.size()) {
                    break;
                }
                const char c = text[i];
                if (c == '%') {
                    ++i;
                    if (i < text.size() && text[i] == 't') {
                        *word += std::to_string(rank);
                    } else if (i < text.size() && text[i] == 'o') {
                        *word += std::to_string(offset);
                    }
                    if (i < text.size()) {
                        ++i;
                    }
                    continue;
                }
                if (c == '\\') {
                    ++i;
                    if (i < text.size()) {
                        *word += text[i++];
                    } else if (!continue_line()) {
                        break;
                    }
                    continue;
                }
                if (c == '\'') {
                    ++i;
                    for (;;) {
                        const std::size_t q = text.find('\'', i);
                        if (q != std::string_view::npos) {
                            word->append(text.substr(i, q - i));
                            i = q + 1;
                            break;
                        }
                        // No closing quote: only a line ending in a backslash may continue it.
                        const std::string_view rest = text.substr(i);
                        if (!text.empty() && text.back() == '\\' && continue_line()) {
                            word->append(rest);
                            continue;
                        }
                        result.error =
                            "line " + std::to_string(line_num) + ": a quote (') is not closed";
                        return result;
                    }
                    continue;
                }
                // A space ends the word.
                while (i < text.size() && is_space(text[i])) {
                    ++i;
                }
                break;
            }
        }
        if (word) {
            words.push_back(std::move(*word));
        }
        for (const auto &e : extra) {
            if (words.size() + 1 >= kMaxArgc) {
                break;
            }
            words.push_back(e);
        }
        if (words.empty() || words[0].empty()) {
            result.error = "line " + std::to_string(line_num) + ": no program for task " +
                           std::to_string(rank);
            return result;
        }
        result.argv = std::move(words);
        return result;
    }
    result.error = "no line for task " + std::to_string(rank);
    return result;
}

std::optional<std::string> env_get(const std::vector<std::string> &env, std::string_view name) {
    for (const auto &e : env) {
        if (env_entry_sets(e, name)) {
            return e.substr(name.size() + 1);
        }
    }
    return std::nullopt;
}

void env_unset(std::vector<std::string> &env, std::string_view name) {
    std::erase_if(env, [&](const std::string &e) { return env_entry_sets(e, name); });
}

void env_set(std::vector<std::string> &env, std::string_view name, std::string_view value) {
    std::string entry = std::string(name) + "=" + std::string(value);
    for (auto &e : env) {
        if (env_entry_sets(e, name)) {
            e = std::move(entry);
            return;
        }
    }
    env.push_back(std::move(entry));
}

std::string apply_task_prolog_output(std::string_view output, std::vector<std::string> &env) {
    std::string printed;
    std::size_t start = 0;
    while (start < output.size()) {
        std::size_t end = output.find('\n', start);
        const bool last = end == std::string_view::npos;
        if (last) {
            end = output.size();
        }
        std::string_view line = output.substr(start, end - start);
        start = end + 1;
        const auto skip_spaces = [](std::string_view s) {
            std::size_t i = 0;
            while (i < s.size() && is_space(s[i])) {
                ++i;
            }
            return s.substr(i);
        };
        if (line.starts_with("print ")) {
            printed += skip_spaces(line.substr(6));
            if (!last) {
                printed += '\n';
            }
        } else if (line.starts_with("export ")) {
            std::string_view rest = skip_spaces(line.substr(7));
            const std::size_t eq = rest.find('=');
            if (eq == std::string_view::npos) {
                continue;
            }
            std::string_view name = rest.substr(0, eq);
            while (!name.empty() && is_space(name.back())) {
                name.remove_suffix(1);
            }
            if (name.empty()) {
                continue;  // setenv refuses an empty name
            }
            env_set(env, name, rest.substr(eq + 1));
        } else if (line.starts_with("unset ")) {
            std::string_view name = skip_spaces(line.substr(6));
            while (!name.empty() && is_space(name.back())) {
                name.remove_suffix(1);
            }
            if (!name.empty()) {
                env_unset(env, name);
            }
        }
    }
    return printed;
}

PrologRun run_task_prolog(const std::string &path, const std::vector<std::string> &env) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        throw Error("task prolog " + path + ": pipe: " + errno_text(errno));
    }
    UniqueFd read_end(fds[0]), write_end(fds[1]);
    SpawnSpec spec;
    spec.argv = {path};
    spec.program = path;
    spec.env = &env;
    spec.stdout_fd = write_end.get();
    spec.stderr_fd = write_end.get();
    const pid_t pid = spawn_program(spec);
    write_end.reset();
    PrologRun run;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(read_end.get(), buf, sizeof buf);
        if (n > 0) {
            run.output.append(buf, static_cast<std::size_t>(n));
        } else if (n == 0 || errno != EINTR) {
            break;
        }
    }
    while (::waitpid(pid, &run.status, 0) < 0 && errno == EINTR) {
    }
    return run;
}

std::optional<std::string> find_task_prolog_option(const std::vector<std::string> &options) {
    constexpr std::string_view kName = "task-prolog";
    constexpr std::size_t kShortest = 6;  // "task-p": "task-" alone is also --task-epilog
    std::optional<std::string> value;
    for (std::size_t i = 0; i < options.size(); ++i) {
        const std::string &word = options[i];
        if (word == "--") {
            break;
        }
        if (!word.starts_with("--")) {
            continue;
        }
        const std::size_t eq = word.find('=');
        const std::string_view name =
            std::string_view(word).substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
        if (name.size() < kShortest || !kName.starts_with(name)) {
            continue;
        }
        if (eq != std::string::npos) {
            value = word.substr(eq + 1);
        } else if (i + 1 < options.size()) {
            value = options[++i];
        }
    }
    return value;
}

std::set<std::string> propagated_rlimits(const std::string &propagate, const std::string &except) {
    const auto &all = protocol::rlimit_names();
    const auto words = [](const std::string &text) {
        std::vector<std::string> out;
        std::string word;
        for (char c : text + ",") {
            if (c == ',' || c == ' ') {
                if (!word.empty()) {
                    out.push_back(word);
                }
                word.clear();
            } else {
                word += c;
            }
        }
        return out;
    };
    // parse_rlimits: ALL or NONE, or a list, whose names get `flag` and the others !flag.
    const auto parse = [&](const std::string &text, bool flag, const char *option) {
        std::set<std::string> out;
        if (text == "ALL" || text == "NONE") {
            if ((text == "ALL") == flag) {
                out.insert(all.begin(), all.end());
            }
            return out;
        }
        std::set<std::string> listed;
        for (std::string word : words(text)) {
            if (word.starts_with("RLIMIT_")) {
                word.erase(0, 7);
            }
            if (protocol::rlimit_resource(word) < 0) {
                throw Error(std::string(option) + ": '" + word + "' is not a resource limit");
            }
            listed.insert(word);
        }
        for (const auto &name : all) {
            if (listed.contains(name) == flag) {
                out.insert(name);
            }
        }
        return out;
    };
    if (!except.empty()) {
        return parse(except, false, "PropagateResourceLimitsExcept");
    }
    return parse(propagate.empty() ? "ALL" : propagate, true, "PropagateResourceLimits");
}

std::vector<ResourceLimit> task_limits(
    std::vector<std::string> &env, const std::set<std::string> &propagated,
    const std::vector<std::pair<std::string, CurrentLimit>> &current) {
    std::vector<ResourceLimit> limits;
    for (const auto &[name, now] : current) {
        ResourceLimit limit{name, now.soft, now.hard};
        const std::string variable = "SLURM_RLIMIT_" + name;
        if (auto value = env_get(env, variable)) {
            env_unset(env, variable);
            bool user = false;
            std::string_view text = *value;
            if (!text.empty() && text[0] == 'U') {
                user = true;
                text.remove_prefix(1);
            }
            const std::string number(text);
            char *end = nullptr;
            errno = 0;
            const unsigned long long wanted = std::strtoull(number.c_str(), &end, 10);
            const bool valid = !number.empty() && *end == '\0' && errno == 0;
            if (valid && (propagated.contains(name) || user) && wanted != limit.soft) {
                if (wanted <= limit.hard) {
                    limit.soft = wanted;
                } else if (!user) {
                    limit.soft = limit.hard;  // "reducing req to max"
                }
                // The user's value above the hard limit: setrlimit fails, nothing changes.
            }
        }
        limits.push_back(limit);
    }
    return limits;
}

}  // namespace svm

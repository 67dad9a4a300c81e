#include "util/config.h"

#include "util/error.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace svm {
namespace {

// The message of the Error that `parse_config(args)` throws, or "" when it throws none.
std::string config_error(const std::vector<std::string> &args) {
    try {
        parse_config(args);
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

std::string hostname_error(const std::string &tmpl, std::string_view node, uint32_t jobid) {
    try {
        expand_hostname(tmpl, node, jobid);
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

TEST(Config, HasDocumentedDefaults) {
    const Config c = parse_config({});
    EXPECT_EQ(c.catalog, "/etc/slurm/vm-images.json");
    EXPECT_EQ(c.grace_seconds, 30u);
    EXPECT_EQ(c.ready_timeout_seconds, 120u);
    EXPECT_EQ(c.shared_paths, std::vector<std::string>{"/home"});
    EXPECT_EQ(c.hostname_template, "%n-vm%j");
    EXPECT_EQ(c.libvirt_uri, "qemu:///system");
    EXPECT_EQ(c.run_dir, "/run/slurm-vm");
    EXPECT_EQ(c.state_dir, "/var/lib/slurm-vm");
    EXPECT_EQ(c.exec_ports, 8u);
    EXPECT_EQ(c.domain_type, "auto");
    EXPECT_EQ(c.log_dir, "/var/log/slurm-vm");
    EXPECT_EQ(c.host_calls, HostCalls::Steps);
    EXPECT_EQ(c.memory_overhead_mib, 256u);
    EXPECT_EQ(c.libvirt_timeout_seconds, 60u);
    EXPECT_EQ(c.libvirt_reconnect_seconds, 30u);
}

TEST(Config, ParsesLibvirtDeadlinesInSeconds) {
    const Config c = parse_config({"libvirt_timeout=20", "libvirt_reconnect=0"});
    EXPECT_EQ(c.libvirt_timeout_seconds, 20u);
    EXPECT_EQ(c.libvirt_reconnect_seconds, 0u);
    EXPECT_EQ(config_error({"libvirt_timeout=0"}),
              "option 'libvirt_timeout=0': expected a number of seconds from 1 to 86400");
}

TEST(Config, BoundsRootsStoresByDefault) {
    const Config c = parse_config({});
    EXPECT_EQ(c.warm_cache_mib, 4096u);
    EXPECT_EQ(c.min_free_mib, 1024u);
    EXPECT_EQ(c.console_logs_mib, 1024u);
    const Config d = parse_config({"warm_cache=0", "min_free=200", "console_logs=64"});
    EXPECT_EQ(d.warm_cache_mib, 0u);
    EXPECT_EQ(d.min_free_mib, 200u);
    EXPECT_EQ(d.console_logs_mib, 64u);
    EXPECT_EQ(config_error({"console_logs=0"}),
              "option 'console_logs=0': expected a number of MiB from 1 to 1073741824");
}

TEST(Config, KvmVerdictsLapseAfterADayByDefault) {
    EXPECT_EQ(parse_config({}).kvm_verdict_ttl_seconds, 86400u);
    EXPECT_EQ(parse_config({"kvm_verdict_ttl=3600"}).kvm_verdict_ttl_seconds, 3600u);
    EXPECT_EQ(config_error({"kvm_verdict_ttl=10"}),
              "option 'kvm_verdict_ttl=10': expected a number of seconds from 60 to 2592000");
}

TEST(Config, ParsesMemoryOverheadInMibZeroIncluded) {
    EXPECT_EQ(parse_config({"memory_overhead=512"}).memory_overhead_mib, 512u);
    EXPECT_EQ(parse_config({"memory_overhead=0"}).memory_overhead_mib, 0u);
}

TEST(Config, RejectsMemoryOverheadWithUnitsOrOutOfRange) {
    EXPECT_EQ(config_error({"memory_overhead=256M"}),
              "option 'memory_overhead=256M': expected a number of MiB from 0 to 65536");
    EXPECT_EQ(config_error({"memory_overhead=65537"}),
              "option 'memory_overhead=65537': expected a number of MiB from 0 to 65536");
    EXPECT_EQ(config_error({"memory_overhead=-1"}),
              "option 'memory_overhead=-1': expected a number of MiB from 0 to 65536");
}

TEST(Config, ParsesEveryOption) {
    const Config c = parse_config({"catalog=/etc/slurm/images.json", "grace=10",
                                   "ready_timeout=300", "shared_paths=/home,/scratch,/opt/sw",
                                   "hostname=vm%j-%n", "libvirt_uri=qemu+tcp://host/system",
                                   "run_dir=/run/svm", "state_dir=/srv/svm", "exec_ports=30",
                                   "domain_type=kvm", "log_dir=/tmp/svm-logs", "host_calls=all"});
    EXPECT_EQ(c.catalog, "/etc/slurm/images.json");
    EXPECT_EQ(c.grace_seconds, 10u);
    EXPECT_EQ(c.ready_timeout_seconds, 300u);
    EXPECT_EQ(c.shared_paths, (std::vector<std::string>{"/home", "/scratch", "/opt/sw"}));
    EXPECT_EQ(c.hostname_template, "vm%j-%n");
    EXPECT_EQ(c.libvirt_uri, "qemu+tcp://host/system");
    EXPECT_EQ(c.run_dir, "/run/svm");
    EXPECT_EQ(c.state_dir, "/srv/svm");
    EXPECT_EQ(c.exec_ports, 30u);
    EXPECT_EQ(c.domain_type, "kvm");
    EXPECT_EQ(c.log_dir, "/tmp/svm-logs");
    EXPECT_EQ(c.host_calls, HostCalls::All);
}

TEST(Config, RejectsUnknownOptionListingValidOnes) {
    EXPECT_EQ(config_error({"foo=1"}),
              "unknown option 'foo=1'; valid options: catalog, grace, ready_timeout, "
              "shared_paths, hostname, libvirt_uri, run_dir, state_dir, exec_ports, "
              "domain_type, log_dir, network, kvm_probe_timeout, host_calls, share, pin_vcpus, "
              "warm_start, virtiofsd, "
              "uefi_code, uefi_vars, memory_overhead, warm_cache, min_free, console_logs, "
              "kvm_verdict_ttl, libvirt_timeout, libvirt_reconnect");
}

TEST(Config, RejectsWordWithoutEquals) {
    EXPECT_EQ(config_error({"grace"}).substr(0, 51),
              "option 'grace' is not of the form key=value; valid ");
}

TEST(Config, RejectsOptionGivenTwice) {
    EXPECT_EQ(config_error({"grace=1", "grace=2"}), "option 'grace' is given twice");
}

TEST(Config, RejectsNonNumericGrace) {
    EXPECT_EQ(config_error({"grace=abc"}),
              "option 'grace=abc': expected a number of seconds from 0 to 86400");
    EXPECT_EQ(config_error({"grace=-1"}),
              "option 'grace=-1': expected a number of seconds from 0 to 86400");
    EXPECT_EQ(config_error({"grace=10s"}),
              "option 'grace=10s': expected a number of seconds from 0 to 86400");
    EXPECT_EQ(config_error({"grace="}),
              "option 'grace=': expected a number of seconds from 0 to 86400");
}

TEST(Config, AcceptsZeroGraceButNotZeroReadyTimeout) {
    EXPECT_EQ(parse_config({"grace=0"}).grace_seconds, 0u);
    EXPECT_EQ(config_error({"ready_timeout=0"}),
              "option 'ready_timeout=0': expected a number of seconds from 1 to 86400");
}

TEST(Config, RejectsExecPortsOutsideOneToThirty) {
    EXPECT_EQ(config_error({"exec_ports=0"}),
              "option 'exec_ports=0': expected a number of ports from 1 to 30");
    EXPECT_EQ(config_error({"exec_ports=31"}),
              "option 'exec_ports=31': expected a number of ports from 1 to 30");
    EXPECT_EQ(config_error({"exec_ports=99999999999999999999999"}),
              "option 'exec_ports=99999999999999999999999': expected a number of ports from 1 "
              "to 30");
}

TEST(Config, RejectsUnknownDomainType) {
    EXPECT_EQ(config_error({"domain_type=xen"}),
              "option 'domain_type=xen': expected auto, kvm or qemu");
}

TEST(Config, ParsesEachHostCallsModeByItsName) {
    EXPECT_EQ(parse_config({"host_calls=none"}).host_calls, HostCalls::None);
    EXPECT_EQ(parse_config({"host_calls=steps"}).host_calls, HostCalls::Steps);
    EXPECT_EQ(parse_config({"host_calls=all"}).host_calls, HostCalls::All);
    for (HostCalls mode : {HostCalls::None, HostCalls::Steps, HostCalls::All}) {
        EXPECT_EQ(host_calls_from_name(host_calls_name(mode)), mode);
    }
}

TEST(Config, RejectsUnknownHostCallsMode) {
    EXPECT_EQ(config_error({"host_calls=some"}),
              "option 'host_calls=some': expected all, steps or none");
    EXPECT_EQ(config_error({"host_calls=Steps"}),
              "option 'host_calls=Steps': expected all, steps or none");
    EXPECT_EQ(config_error({"host_calls="}), "option 'host_calls=': expected all, steps or none");
}

TEST(Config, RejectsRelativeAndDotDotPaths) {
    EXPECT_EQ(config_error({"catalog=images.json"}),
              "option 'catalog=images.json': path is not absolute");
    EXPECT_EQ(config_error({"state_dir=/var/lib/../../tmp"}),
              "option 'state_dir=/var/lib/../../tmp': path contains '..'");
    EXPECT_EQ(config_error({"run_dir="}), "option 'run_dir=': path is empty");
    EXPECT_EQ(config_error({"log_dir=/var/log/a\nb"}),
              "option 'log_dir=/var/log/a\\x0ab': path contains a newline");
}

TEST(Config, AcceptsDotsInsidePathComponents) {
    EXPECT_EQ(parse_config({"catalog=/etc/slurm/vm..images.json"}).catalog,
              "/etc/slurm/vm..images.json");
}

TEST(Config, RejectsBadSharedPaths) {
    EXPECT_EQ(config_error({"shared_paths=/home,scratch"}),
              "option 'shared_paths=/home,scratch': path 'scratch' is not absolute");
    EXPECT_EQ(config_error({"shared_paths=/home,,/scratch"}),
              "option 'shared_paths=/home,,/scratch': path '' is empty");
    EXPECT_EQ(config_error({"shared_paths=/home,/home"}),
              "option 'shared_paths=/home,/home': path '/home' is listed twice");
}

TEST(Config, EmptySharedPathsSharesNothing) {
    EXPECT_TRUE(parse_config({"shared_paths="}).shared_paths.empty());
}

TEST(Config, RejectsLibvirtUriWithSpaces) {
    EXPECT_EQ(config_error({"libvirt_uri=qemu:///system extra"}),
              "option 'libvirt_uri=qemu:///system extra': contains whitespace or control "
              "characters");
    EXPECT_EQ(config_error({"libvirt_uri="}), "option 'libvirt_uri=': is empty");
}

TEST(Config, ValidatesHostnameTemplateAtLoad) {
    EXPECT_EQ(config_error({"hostname=%n_vm%j"}),
              "option 'hostname': hostname template '%n_vm%j' gives 'node1_vm1' for node "
              "'node1', job 1: not a valid hostname: label 'node1_vm1' contains '_' (allowed: "
              "a-z, 0-9, '-')");
    EXPECT_EQ(config_error({"hostname=%n-%x"}),
              "option 'hostname': hostname template '%n-%x': unknown '%x' (use %n for the node "
              "name, %j for the job id, %% for '%')");
}

TEST(ExpandHostname, ReplacesNodeAndJobId) {
    EXPECT_EQ(expand_hostname("%n-vm%j", "node1", 42), "node1-vm42");
    EXPECT_EQ(expand_hostname("vm%j.cluster.example", "node1", 7), "vm7.cluster.example");
}

TEST(ExpandHostname, LowerCasesTheNodeName) {
    EXPECT_EQ(expand_hostname("%n-vm%j", "GPU-Node03", 5), "gpu-node03-vm5");
}

TEST(ExpandHostname, ExpandsPercentPercentToAPercentSign) {
    EXPECT_EQ(hostname_error("a%%b", "n", 1),
              "hostname template 'a%%b' gives 'a%b' for node 'n', job 1: not a valid hostname: "
              "label 'a%b' contains '%' (allowed: a-z, 0-9, '-')");
}

TEST(ExpandHostname, RejectsTrailingPercent) {
    EXPECT_EQ(hostname_error("vm%", "n", 1), "hostname template 'vm%': ends with a lone '%'");
}

TEST(ExpandHostname, RejectsNodeNamesThatMakeInvalidHostnames) {
    EXPECT_EQ(hostname_error("%n-vm%j", "node_1", 3),
              "hostname template '%n-vm%j' gives 'node_1-vm3' for node 'node_1', job 3: not a "
              "valid hostname: label 'node_1-vm3' contains '_' (allowed: a-z, 0-9, '-')");
}

TEST(ExpandHostname, RejectsLabelsStartingOrEndingWithDash) {
    EXPECT_EQ(hostname_error("-%n", "n", 1),
              "hostname template '-%n' gives '-n' for node 'n', job 1: not a valid hostname: "
              "label '-n' starts with '-'");
    EXPECT_EQ(hostname_error("%n-", "n", 1),
              "hostname template '%n-' gives 'n-' for node 'n', job 1: not a valid hostname: "
              "label 'n-' ends with '-'");
}

TEST(HostnameProblem, EnforcesRfc1123Lengths) {
    EXPECT_EQ(hostname_problem(std::string(63, 'a')), "");
    EXPECT_EQ(hostname_problem(std::string(64, 'a')),
              "label '" + std::string(64, 'a') + "' is longer than 63 characters");
    std::string long_name;
    for (int i = 0; i < 64; ++i) {
        long_name += "abc.";
    }
    long_name += "abc";
    EXPECT_EQ(hostname_problem(long_name), "is longer than 253 characters");
    EXPECT_EQ(hostname_problem("a..b"), "has an empty label");
    EXPECT_EQ(hostname_problem("a."), "has an empty label");
    EXPECT_EQ(hostname_problem(""), "is empty");
}

}  // namespace
}  // namespace svm

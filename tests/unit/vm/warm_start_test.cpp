#include "vm/warm_start.h"

#include "util/atomic_file.h"
#include "util/error.h"
#include "util/fd.h"
#include "vm/libvirt_handles.h"
#include "vm/vm_lifecycle.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace svm {
namespace {

namespace fs = std::filesystem;

class WarmStartTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-warm-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        image.name = "tiny";
        image.kernel = dir + "/vmlinux";
        image.initrd = dir + "/initrd.img";
        write_file_atomically(image.kernel, "kernel", 0644);
        write_file_atomically(image.initrd, "initrd", 0644);
        spec.name = "svm-42-node1";
        spec.domain_type = "qemu";
        spec.vcpus = 1;
        spec.memory_mib = 256;
        spec.kernel = image.kernel;
        spec.initrd = image.initrd;
        spec.channel_dir = "/run/slurm-vm/svm-42-node1";
        spec.exec_ports = 2;
        spec.console_log = "/var/log/slurm-vm/svm-42-node1.console.log";
        spec.run_as = std::make_pair(1000u, 1000u);
        spec.cpus = {1};
        spec.metadata = {{"jobid", "42"}};
    }
    void TearDown() override { fs::remove_all(dir); }

    std::string dir;
    Image image;
    VmSpec spec;
};

TEST(WarmKeyHash, IsFnv1a64InHex) {
    EXPECT_EQ(warm_key_hash(""), "cbf29ce484222325");
    EXPECT_EQ(warm_key_hash("a"), "af63dc4c8601ec8c");
}

TEST_F(WarmStartTest, KeyIgnoresWhatDiffersBetweenTwoJobsOfOneShape) {
    const std::string key = warm_key_text(image, "qemu=7.2", spec);
    VmSpec other = spec;
    other.name = "svm-43-node2";
    other.channel_dir = "/run/slurm-vm/svm-43-node2";
    other.console_log = "/elsewhere";
    other.run_as = std::make_pair(1001u, 1001u);
    other.cpus = {0};
    other.metadata = {{"jobid", "43"}};
    other.uuid = "0123abcd-0000-4000-8000-00000000beef";
    EXPECT_EQ(warm_key_text(image, "qemu=7.2", other), key);
}

TEST_F(WarmStartTest, KeyChangesWithTheSizeTheHostAndTheImageFiles) {
    const std::string key = warm_key_text(image, "qemu=7.2", spec);
    const std::string key_dir = warm_key_dir("/s", "tiny", key);
    VmSpec bigger = spec;
    bigger.vcpus = 2;
    const std::string bigger_dir =
        warm_key_dir("/s", "tiny", warm_key_text(image, "qemu=7.2", bigger));
    EXPECT_NE(bigger_dir, key_dir);
    // The size is the last level: the image's level stays, and is not pruned.
    EXPECT_EQ(fs::path(bigger_dir).parent_path(), fs::path(key_dir).parent_path());
    EXPECT_EQ(fs::path(key_dir).parent_path().parent_path(), "/s/warm/tiny");

    const std::string other_host =
        warm_key_dir("/s", "tiny", warm_key_text(image, "qemu=8.0", spec));
    EXPECT_NE(fs::path(other_host).parent_path(), fs::path(key_dir).parent_path());

    timeval times[2] = {{1000, 0}, {1000, 0}};
    ASSERT_EQ(utimes(image.initrd.c_str(), times), 0);
    EXPECT_NE(warm_key_text(image, "qemu=7.2", spec), key);
}

TEST_F(WarmStartTest, KeyOfAMissingImageFileIsAnErrorNamingIt) {
    image.initrd = dir + "/gone.img";
    try {
        warm_key_text(image, "qemu=7.2", spec);
        FAIL() << "no error";
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find(dir + "/gone.img"), std::string::npos) << e.what();
    }
}

TEST(WarmIdentity, UuidAndMacAreWellFormedAndFresh) {
    const std::string a = random_uuid(), b = random_uuid();
    EXPECT_NE(a, b);
    ASSERT_EQ(a.size(), 36u);
    EXPECT_EQ(a[14], '4');  // version 4
    const std::string mac = random_mac();
    EXPECT_EQ(mac.size(), 17u);
    EXPECT_EQ(mac.substr(0, 9), "52:54:00:");
    // render_domain_xml checks both shapes.
    VmSpec spec;
    spec.name = "x";
    spec.domain_type = "qemu";
    spec.kernel = "/k";
    spec.user_network = true;
    spec.uuid = a;
    spec.mac = mac;
    EXPECT_NO_THROW(render_domain_xml(spec));
}

// A file laid out as libvirt's virQEMUSaveDataWrite writes it.
std::string save_file(const std::string &xml, const std::string &cookie, const std::string &stream,
                      const char *magic = "LibvirtQemudSave") {
    std::uint32_t header[23] = {};
    std::memcpy(header, magic, 16);
    const std::string data = xml + '\0' + cookie + '\0' + std::string(64 * 1024, '\0');
    header[4] = 2;                                           // version
    header[5] = static_cast<std::uint32_t>(data.size());     // data_len
    header[6] = 1;                                           // was_running
    header[8] = static_cast<std::uint32_t>(xml.size() + 1);  // cookieOffset
    return std::string(reinterpret_cast<const char *>(header), 92) + data + stream;
}

std::string read_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_F(WarmStartTest, RenamesTheSavedDomainAndKeepsTheCookieAndTheStream) {
    const std::string xml =
        "<domain type='qemu'>\n  <name>svm-warm-abc-0</name>\n  <uuid>u</uuid>\n"
        "  <devices><name>x</name></devices>\n</domain>\n";
    const std::string cookie = "<qemu-migration><cpu/></qemu-migration>\n";
    const std::string stream = "QEVM\x01\x02 the migration stream";
    const std::string path = dir + "/state";
    write_file_atomically(path, save_file(xml, cookie, stream), 0600);
    const auto before = fs::file_size(path);

    rename_saved_domain(path, "svm-1234567-node1");
    const std::string after = read_file(path);
    EXPECT_EQ(after.size(), before);
    const std::string new_xml(after.c_str() + 92);
    EXPECT_NE(new_xml.find("<name>svm-1234567-node1</name>"), std::string::npos) << new_xml;
    EXPECT_NE(new_xml.find("<devices><name>x</name>"), std::string::npos);
    std::uint32_t cookie_offset = 0;
    std::memcpy(&cookie_offset, after.data() + 32, 4);
    EXPECT_EQ(cookie_offset, new_xml.size() + 1);
    EXPECT_EQ(std::string(after.c_str() + 92 + cookie_offset), cookie);
    EXPECT_EQ(after.substr(after.size() - stream.size()), stream);

    // Again, back to a shorter name: nothing of the longer one is left.
    rename_saved_domain(path, "svm-1-n");
    EXPECT_EQ(std::string(read_file(path).c_str() + 92).find("1234567"), std::string::npos);
}

TEST_F(WarmStartTest, RefusesToRenameWhatIsNotALibvirtSaveFile) {
    const std::string path = dir + "/state";
    write_file_atomically(
        path, save_file("<domain><name>a</name></domain>", "", "s", "NotASaveFileXXX"), 0600);
    EXPECT_THROW(rename_saved_domain(path, "b"), Error);
    write_file_atomically(path, "short", 0600);
    EXPECT_THROW(rename_saved_domain(path, "b"), Error);
    write_file_atomically(path, save_file("<domain><uuid>u</uuid><name>a</name></domain>", "", "s"),
                          0600);
    EXPECT_THROW(rename_saved_domain(path, "b"), Error);  // <name> is not first
    write_file_atomically(path, save_file("<domain><name>a</name></domain>", "", "s"), 0600);
    EXPECT_THROW(rename_saved_domain(path, std::string(70000, 'n')), Error);  // does not fit
    EXPECT_THROW(rename_saved_domain(dir + "/none", "b"), Error);
}

TEST_F(WarmStartTest, RefusalLastsAnHourThenLapses) {
    const std::string key_dir = dir + "/key";
    fs::create_directories(key_dir);
    EXPECT_EQ(warm_make_refusal(key_dir), "");
    write_file_atomically(key_dir + "/make-failed", "the guest died\n", 0644);
    EXPECT_EQ(warm_make_refusal(key_dir), "an earlier try failed: the guest died");
    const time_t old = time(nullptr) - kWarmRetryAfter.count() - 10;
    timeval times[2] = {{old, 0}, {old, 0}};
    ASSERT_EQ(utimes((key_dir + "/make-failed").c_str(), times), 0);
    EXPECT_EQ(warm_make_refusal(key_dir), "");
    EXPECT_FALSE(fs::exists(key_dir + "/make-failed"));
}

TEST_F(WarmStartTest, SlotsAreTakenLowestFreeFirstAndKeepTheirStateForTheirKeyOnly) {
    ConnectionPtr conn = open_connection("test:///default");
    const std::string key_dir = dir + "/warm/tiny/a/b";
    auto first = take_warm_slot(conn.get(), key_dir, "key");
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(first->index, 0u);
    EXPECT_FALSE(first->has_state);
    EXPECT_EQ(first->dir, key_dir + "/slot-0");
    EXPECT_EQ(fs::status(key_dir).permissions() & fs::perms::others_exec, fs::perms::others_exec);
    {
        // Held by another taker: the next one gets slot 1.
        auto second = take_warm_slot(conn.get(), key_dir, "key");
        ASSERT_TRUE(second.has_value());
        EXPECT_EQ(second->index, 1u);
    }
    // A snapshot of slot 0, as make_warm_snapshot leaves it.
    write_file_atomically(first->dir + "/state", "saved", 0644);
    write_file_atomically(first->dir + "/meta.json",
                          R"({"key": "key", "uuid": "0123abcd-0000-4000-8000-00000000beef",)"
                          R"( "mac": "52:54:00:0a:0b:0c"})",
                          0644);
    first.reset();
    auto again = take_warm_slot(conn.get(), key_dir, "key");
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->index, 0u);
    EXPECT_TRUE(again->has_state);
    EXPECT_EQ(again->uuid, "0123abcd-0000-4000-8000-00000000beef");
    EXPECT_EQ(again->mac, "52:54:00:0a:0b:0c");
    again.reset();

    // While a domain with the slot's UUID runs, the slot is busy.
    VmLifecycle vm(conn.get(), "svm-warm-test");
    vm.create(
        "<domain type='test'><name>svm-warm-test</name>"
        "<uuid>0123abcd-0000-4000-8000-00000000beef</uuid><memory>65536</memory>"
        "<os><type>hvm</type></os></domain>");
    auto busy = take_warm_slot(conn.get(), key_dir, "key");
    ASSERT_TRUE(busy.has_value());
    EXPECT_EQ(busy->index, 1u);
    busy.reset();
    vm.destroy();

    // Another key's snapshot is not this one's: the slot is emptied.
    auto other = take_warm_slot(conn.get(), key_dir, "another key");
    ASSERT_TRUE(other.has_value());
    EXPECT_EQ(other->index, 0u);
    EXPECT_FALSE(other->has_state);
    EXPECT_FALSE(fs::exists(key_dir + "/slot-0/state"));
}

// A snapshot as make_warm_snapshot leaves it, last used `age` seconds ago, with `mib` MiB of
// state on disk.
void fake_snapshot(const std::string &slot_dir, const std::string &uuid, int age, int mib) {
    fs::create_directories(slot_dir);
    write_file_atomically(slot_dir + "/meta.json",
                          R"({"key": "k", "uuid": ")" + uuid + R"(", "mac": ""})", 0644);
    write_file_atomically(slot_dir + "/state", std::string(static_cast<size_t>(mib) << 20, 'x'),
                          0600);
    std::ofstream(slot_dir + ".lock");
    const time_t when = time(nullptr) - age;
    timeval times[2] = {{when, 0}, {when, 0}};
    utimes((slot_dir + "/meta.json").c_str(), times);
}

// Each distinct --mem or -c leaves a snapshot: the cache keeps within warm_cache by dropping
// the least recently used, never one that is in use.
TEST_F(WarmStartTest, TheCacheDropsTheLeastRecentlyUsedSnapshotsBeyondItsBound) {
    ConnectionPtr conn = open_connection("test:///default");
    const std::string warm = dir + "/warm/tiny/files";
    const std::string a = warm + "/shape-a/slot-0", b = warm + "/shape-b/slot-0",
                      c = warm + "/shape-c/slot-0", d = warm + "/shape-d/slot-0",
                      e = warm + "/shape-e/slot-0";
    fake_snapshot(a, "00000000-0000-4000-8000-00000000000a", 500, 1);  // the oldest
    fake_snapshot(b, "00000000-0000-4000-8000-00000000000b", 400, 1);  // a VM runs from it
    fake_snapshot(c, "00000000-0000-4000-8000-00000000000c", 300, 1);  // being restored
    fake_snapshot(d, "00000000-0000-4000-8000-00000000000d", 200, 1);
    fake_snapshot(e, "00000000-0000-4000-8000-00000000000e", 100, 1);  // the caller's own
    VmLifecycle vm(conn.get(), "svm-77-node1");
    vm.create(
        "<domain type='test'><name>svm-77-node1</name>"
        "<uuid>00000000-0000-4000-8000-00000000000b</uuid><memory>65536</memory>"
        "<os><type>hvm</type></os></domain>");
    UniqueFd held(open((c + ".lock").c_str(), O_RDWR));
    ASSERT_EQ(flock(held.get(), LOCK_EX), 0);

    // 5 MiB (and a little) against a bound of 3: a and d go, oldest first; b, c and e stay.
    const auto removed = evict_warm_snapshots(conn.get(), dir, 3, e);
    EXPECT_EQ(removed, (std::vector<std::string>{a, d}));
    EXPECT_FALSE(fs::exists(a));
    EXPECT_TRUE(fs::exists(b + "/state"));
    EXPECT_TRUE(fs::exists(c + "/state"));
    EXPECT_FALSE(fs::exists(d));
    EXPECT_TRUE(fs::exists(e + "/state"));
    vm.destroy();
    // Within the bound, nothing goes.
    EXPECT_TRUE(evict_warm_snapshots(conn.get(), dir, 100, "").empty());
}

TEST_F(WarmStartTest, TakingASnapshotMarksItUsed) {
    ConnectionPtr conn = open_connection("test:///default");
    const std::string key_dir = dir + "/warm/tiny/a/b";
    fs::create_directories(key_dir + "/slot-0");
    write_file_atomically(key_dir + "/slot-0/state", "saved", 0644);
    fake_snapshot(key_dir + "/slot-0", "00000000-0000-4000-8000-0000000000f0", 1000, 0);
    write_file_atomically(key_dir + "/slot-0/meta.json",
                          R"({"key": "key", "uuid": "00000000-0000-4000-8000-0000000000f0",)"
                          R"( "mac": ""})",
                          0644);
    const time_t old = time(nullptr) - 1000;
    timeval times[2] = {{old, 0}, {old, 0}};
    ASSERT_EQ(utimes((key_dir + "/slot-0/meta.json").c_str(), times), 0);
    auto slot = take_warm_slot(conn.get(), key_dir, "key");
    ASSERT_TRUE(slot.has_value());
    EXPECT_TRUE(slot->has_state);
    struct stat st {};
    ASSERT_EQ(stat((key_dir + "/slot-0/meta.json").c_str(), &st), 0);
    EXPECT_GT(st.st_mtime, old + 900);
}

}  // namespace
}  // namespace svm

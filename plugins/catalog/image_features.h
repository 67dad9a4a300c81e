// Images as node features, free of Slurm: what a node advertises (the catalog images whose files
// are on it), how an image request becomes part of a job's --constraint, and how a constraint
// alone (as slurmrestd sends it) names an image. The select/ plugins are thin adapters over this.
//
// Naming rule: the feature of image NAME is "vm_NAME" (image_feature() in image_name.h). Features
// that start with "vm_" and continue with a valid image name belong to slurm-vm: the node_features
// plugin replaces them on every registration, so an admin must not list them in slurm.conf.
#pragma once

#include "catalog/catalog.h"

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace svm {

// Where the Slurm-side plugins (job_submit in slurmctld, node_features in slurmd) read the
// catalog: $SLURM_VM_CATALOG in the daemon's environment when set, else
// /etc/slurm/vm-images.json. They take no arguments of their own, unlike the SPANK plugin.
std::string catalog_path_from_environment();

// Per-node image folders: "%n" in a catalog path stands for the Slurm node name, so one catalog
// can describe files that differ per node ("/var/lib/slurm-vm/images/%n/tiny/vmlinux"), and
// several slurmd on one host look like different hosts. Returns the image with kernel, initrd and
// disk expanded for `node`. Throws Error when a path uses %n and the node name cannot be part of
// a path (empty, '/', "." or "..", control characters).
Image resolve_for_node(const Image &image, std::string_view node);

// The catalog images usable on `node`: every file the image names (kernel, initrd, disk, after
// resolve_for_node) is a regular file this process can read. Catalog order.
std::vector<std::string> images_present_on_node(const Catalog &catalog, std::string_view node);

// A node's feature list after a registration: every feature of `configured` that is not an image
// feature (the admin's, from slurm.conf), then `image_features`, without duplicates, joined by
// ','. Old image features in `configured` are dropped: the node's new list replaces them.
std::string merge_node_features(const std::string &configured,
                                const std::vector<std::string> &image_features);

// The image features of a node's feature list ("svmhost,vm_tiny,vm_deb" -> {vm_tiny, vm_deb}).
std::vector<std::string> image_features_in(const std::string &features);

// What slurmctld remembers of each node's image features across its own restarts. A new
// slurmctld (any restart; on Slurm 23.11 and later every `scontrol reconfigure`) keeps only
// slurm.conf's features until each slurmd registers again, and would meanwhile refuse every VM
// job as "on no node". The file has one line per node, "<node> <feature>,<feature>..." (a
// node with no image: "<node> -").
using KnownImageFeatures = std::map<std::string, std::vector<std::string>>;
std::string render_known_image_features(const KnownImageFeatures &known);
// Lines that are not a node name and a list of image features are skipped: the file is
// root's, but a damaged one must cost nothing but the restore.
KnownImageFeatures parse_known_image_features(std::string_view text);

// A node's features at slurmctld's start: `features` with the image features it last
// reported, unless `features` already has image features of its own (the node registered).
std::string restore_image_features(const std::string &features,
                                   const std::vector<std::string> &known);

// A node's active features without the image features its latest report lacks; slurm.conf's
// features stay. Slurm 23.11 and later set a node INVAL when its report has fewer changeable
// features than slurmctld holds active for it, and an image that left the node (during a
// restart of slurmctld or of the node's slurmd) is exactly that.
std::string drop_unreported_image_features(const std::string &active,
                                           const std::vector<std::string> &reported);

// The job's --constraint with the feature of `image` required. Slurm 22.05 evaluates a
// constraint strictly left to right and allows one level of parentheses and one bracket group,
// so the image feature is AND-ed at the end of the top level:
//   ""           -> "vm_tiny"
//   "gpu"        -> "gpu&vm_tiny"
//   "a|b"        -> "(a|b)&vm_tiny"          (parentheses make the grouping explicit)
//   "(a|b)&c"    -> "(a|b)&c&vm_tiny"        (Slurm rejects nested parentheses)
//   "[r1|r2]"    -> "[r1|r2]&vm_tiny"        (parentheses would turn the bracket's XOR into OR)
// A constraint that already requires the feature is returned unchanged. Throws Error (one line,
// for the user) when the constraint names another image's feature ("one VM image per job"), uses
// node counts ("a*2": Slurm does not filter counted node sets by the other terms), or mentions the
// image's feature anywhere but as a top-level AND-ed term.
std::string add_image_constraint(const std::string &features, std::string_view image);

// The image a constraint asks for when it is the only request (no --vm-image, no environment
// variable): the image of the one image feature AND-ed at the top level ("vm_tiny&gpu" ->
// "tiny"). nullopt when the constraint has no image feature at all. Throws Error when image
// features appear in any other way (OR-ed, bracketed, counted, in parentheses) or name more than
// one image: such a job would land on an image's node without a VM.
std::optional<std::string> image_from_constraint(const std::string &features);

}  // namespace svm

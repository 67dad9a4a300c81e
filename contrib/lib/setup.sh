# The set-up that quickstart.sh and test.sh share: install, build, make the guest, write the
# catalog, start the cluster. Each step prints its time. Sourced after common.sh.

: "${SVM_PREFIX:=/usr/local}"
: "${SVM_PLUGIN_DIR:=$SVM_PREFIX/lib/slurm-vm}"
: "${SVM_CATALOG:=/etc/slurm/vm-images.json}"
: "${SVM_IMAGES:=/var/lib/slurm-vm/images}"
export SVM_PREFIX SVM_PLUGIN_DIR SVM_CATALOG SVM_IMAGES

svm_setup() {
  svm_install
  phase "start the cluster (munge, MariaDB, slurmdbd, slurmctld, 3 slurmd, libvirtd)"
  "$SVM_REPO/contrib/cluster.sh" start
}

# svm_install: everything but the cluster: packages, build, install, guest images. In the
# debian13-vm platform's system VM all of it was done in the Debian 13 root the VM's disk was
# made from (the tree is mounted read-only there): nothing to do.
svm_install() {
  need_root
  if [ "${SVM_PLATFORM:-}" = debian13-vm ]; then
    echo "Debian 13 system VM: slurm-vm and the images were installed in the root its disk was made from"
    return 0
  fi
  phase "install Debian packages"
  "$SVM_REPO/contrib/install-deps.sh"

  phase "Slurm internal headers (cached by version)"
  SLURM_SRC=$("$SVM_REPO/contrib/slurm-headers.sh")
  echo "$SLURM_SRC"

  phase "build and install slurm-vm"
  cmake -S "$SVM_REPO" -B "$SVM_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_INSTALL_PREFIX="$SVM_PREFIX" -DSLURM_SRC_DIR="$SLURM_SRC" \
    -DSLURM_PLUGIN_DIR="$SVM_PLUGIN_DIR" >"$SVM_CACHE/cmake.log" 2>&1 ||
    { tail -30 "$SVM_CACHE/cmake.log"; die "cmake configure failed"; }
  cmake --build "$SVM_BUILD" -j"$(nproc)" 2>&1 | tail -3
  [ "${PIPESTATUS[0]}" = 0 ] || die "build failed"
  cmake --install "$SVM_BUILD" >/dev/null || die "install failed"

  phase "guest image 'tiny' (cached by package versions)"
  local guest
  guest=$("$SVM_REPO/contrib/build-guest.sh" "$SVM_BUILD/guest/slurm-vm-agent")
  install_images "$guest"

  phase "guest image 'debian11' (Debian 11 from Debian's packages, then slurm-vm image prepare; cached)"
  install_debian11
}

# install_images GUEST_DIR: put the guest where the catalog says and write the catalog.
# Hard links: the images folder is the admin's layout, the cache is ours, the bytes are shared.
install_images() {
  local guest=$1 d
  install -d -m 0755 "$SVM_IMAGES" "$SVM_IMAGES/tiny"
  for f in vmlinux initrd.img; do
    ln -f "$guest/$f" "$SVM_IMAGES/tiny/$f" 2>/dev/null || cp -f "$guest/$f" "$SVM_IMAGES/tiny/$f"
  done
  # "tinydisk": the same guest with a small ext4 root disk, for copy-on-write overlays.
  install -d -m 0755 "$SVM_IMAGES/tinydisk"
  if [ ! -f "$SVM_IMAGES/tinydisk/base.qcow2" ]; then
    local src
    src=$(mktemp -d)
    echo "slurm-vm tinydisk base" >"$src/marker.txt"
    mkfs.ext4 -q -F -L tinydisk -d "$src" "$src.raw" 64M
    qemu-img convert -O qcow2 "$src.raw" "$SVM_IMAGES/tinydisk/base.qcow2"
    rm -rf "$src" "$src.raw"
  fi
  chmod 0644 "$SVM_IMAGES/tinydisk/base.qcow2" # QEMU reads it as the job's user
  sed -e "s|@IMAGES@|$SVM_IMAGES|g" "$SVM_REPO/contrib/etc/vm-images.json.in" >"$SVM_CATALOG.new"
  chmod 0644 "$SVM_CATALOG.new"
  mv "$SVM_CATALOG.new" "$SVM_CATALOG"
  echo "catalog $SVM_CATALOG: $(grep -c '"name"' "$SVM_CATALOG") images"
}

# install_debian11: the test image of a real distribution. Built from Debian's packages
# (contrib/build-debian11.sh), then passed through the product's own `slurm-vm image prepare`,
# as an admin would. The prepared image is cached in $SVM_IMAGE_CACHE (shared by the test
# platforms), keyed by the built image and the sources of what prepare puts in (the agent and
# its protocol) and of prepare itself: not by the binaries, which differ with the compiler and
# the build folder while doing the same.
install_debian11() {
  local built key prepared tmp
  built=$("$SVM_REPO/contrib/build-debian11.sh")
  key=$( (echo "$built"; cd "$SVM_REPO" && find guest plugins/exec/protocol plugins/util \
    plugins/vm/image_prepare.h plugins/vm/image_prepare.cpp tools contrib/lib/guestfs-env.sh \
    -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.sh' \) | LC_ALL=C sort | xargs cat) |
    sha256sum | cut -c1-16)
  prepared=$SVM_IMAGE_CACHE/debian11-prepared-$key
  # Two platforms set up at once (test.sh --platform all) prepare it once: the second waits.
  exec 7>"$SVM_IMAGE_CACHE/debian11-prepared.lock"
  flock 7
  if [ ! -f "$prepared/.complete" ]; then
    . "$SVM_REPO/contrib/lib/guestfs-env.sh"
    guestfs_env
    tmp=$(mktemp -d "$SVM_IMAGE_CACHE/debian11-prepared.tmp.XXXXXX")
    slurm-vm image prepare "$built/base.qcow2" "$tmp/debian11.qcow2" --name debian11 --direct-boot \
      >"$tmp/catalog-entry.json" || { rm -rf "$tmp"; die "slurm-vm image prepare failed on $built/base.qcow2"; }
    touch "$tmp/.complete"
    rm -rf "$prepared"
    mv "$tmp" "$prepared"
    # Older prepared images are of no use any more.
    find "$SVM_IMAGE_CACHE" -maxdepth 1 -name 'debian11-prepared-*' ! -path "$prepared" -exec rm -rf {} + 2>/dev/null || true
  fi
  install -d -m 0755 "$SVM_IMAGES/debian11"
  for f in debian11.qcow2 debian11.vmlinuz debian11.initrd.img; do
    ln -f "$prepared/$f" "$SVM_IMAGES/debian11/$f" 2>/dev/null || cp -f "$prepared/$f" "$SVM_IMAGES/debian11/$f"
    chmod 0644 "$SVM_IMAGES/debian11/$f"
  done
  echo "debian11: $(cat "$built/build.txt" 2>/dev/null | head -1)"
  exec 7>&-
}

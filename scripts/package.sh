#!/usr/bin/env bash
# npm run package: build/lockdrop_<version>_<arch>.deb from this tree, with dpkg-deb.
#   /usr/lib/lockdrop       the compiled code, its production node_modules, the native addon, the probes
#   /usr/bin/lockdrop{d,ctl,}  links to /usr/lib/lockdrop/bin/*
#   /lib/systemd/system/lockdrop.service, /etc/lockdrop/lockdrop.yaml (conffile),
#   /usr/lib/ocf/resource.d/lockdrop/lockdropd, the keepalived notify script, the man pages.
# Nothing is downloaded: node_modules is this tree's, pruned to production (npm prune --offline),
# so the package installs with no network. The native addon is required (it is what Depends on
# libbpf1): build it first (bash scripts/setup.sh or npm run build:native).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

version=$(node -p "require('./package.json').version")
arch=$(dpkg --print-architecture)
homepage=$(node -p "require('./package.json').homepage || 'https://github.com/lockdrop/lockdrop'")
maintainer=$(node -p "const a = require('./package.json').author; (a && (a.name ? a.name + (a.email ? ' <' + a.email + '>' : '') : a)) || 'lockdrop developers <lockdrop@lockdrop.invalid>'")
out=build/lockdrop_${version}_${arch}.deb

npm run --silent build
for f in native/build/Release/lockdrop.node dist/bpf/lockdrop.bpf.o; do
  [ -f "$f" ] || { echo "package: $f is missing: run npm run build:native first" >&2; exit 1; }
done

root=$repo/build/deb-root
rm -rf "$root" "$out"
lib=$root/usr/lib/lockdrop
install -d "$lib/native/build/Release" "$lib/dist" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/lockdrop" \
  "$root/usr/lib/ocf/resource.d/lockdrop" "$root/usr/share/doc/lockdrop/examples" "$root/usr/share/man/man1" \
  "$root/usr/share/man/man5" "$root/usr/share/man/man8" "$root/DEBIAN"

# The code: compiled JavaScript without source maps (the sources are not shipped), the probes, the addon.
cp package.json package-lock.json "$lib/"
cp -a bin "$lib/bin"
cp -a dist/. "$lib/dist/"
find "$lib/dist" -name '*.map' -delete
rm -f "$lib/dist/bpf/selftest.bpf.o" # a test program of the loader, not a probe
install -m 0644 native/build/Release/lockdrop.node "$lib/native/build/Release/"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$lib/native/build/Release/lockdrop.node"
cp -a node_modules "$lib/node_modules"
(cd "$lib" && npm prune --omit=dev --omit=optional --offline --no-audit --no-fund --loglevel=error >/dev/null)
# What the modules' authors keep for their repositories and sites, not for running them:
# linters' and npm's dotfiles, VCS files, pino's docsify page (it loads scripts from CDNs).
find "$lib/node_modules" \( -name '.eslintrc*' -o -name '.npmignore' -o -name '.gitattributes' -o -name '.github' \
  -o -name '.travis.yml' -o -name '.editorconfig' -o -name '.prettierrc*' -o -name '.nycrc*' -o -name '.taprc' \) -prune -exec rm -rf {} +
rm -f "$lib/node_modules/pino/index.html"
# Type declarations a production module lists as a dependency (protobufjs: @types/node) run nothing.
find "$lib/node_modules" -type d -name '@types' -prune -exec rm -rf {} +
# An executable bit on a file that is no program (no #!): a packaging slip of some modules.
find "$lib/node_modules" -type f -perm /111 -print0 | while IFS= read -r -d '' f; do
  [ "$(head -c 2 "$f")" = '#!' ] || chmod a-x "$f"
done
find "$lib/node_modules" -depth -type d -empty -delete
rm -f "$lib/package-lock.json" "$lib/node_modules/.package-lock.json"
for b in lockdropd lockdropctl lockdrop; do ln -s "../lib/lockdrop/bin/$b" "$root/usr/bin/$b"; done
install -m 0755 contrib/keepalived/lockdrop-notify "$lib/keepalived-notify"

install -m 0644 contrib/lockdrop.service "$root/lib/systemd/system/lockdrop.service"
install -m 0644 packaging/deb/lockdrop.yaml "$root/etc/lockdrop/lockdrop.yaml"
install -D -m 0644 packaging/deb/logrotate "$root/etc/logrotate.d/lockdrop"
install -D -m 0644 packaging/deb/lintian-overrides "$root/usr/share/lintian/overrides/lockdrop"
install -m 0755 contrib/ocf/lockdropd "$root/usr/lib/ocf/resource.d/lockdrop/lockdropd"

doc=$root/usr/share/doc/lockdrop
install -m 0644 README.md "$doc/"
install -m 0644 docs/*.md "$doc/"
install -m 0644 contrib/lockdrop.yaml contrib/keepalived/keepalived.conf "$doc/examples/"
gzip -9n -c packaging/deb/changelog > "$doc/changelog.gz"
{
  sed "s|@HOMEPAGE@|$homepage|" packaging/deb/copyright.in
  # The bundled modules, each under its own license.
  for p in $(cd "$lib/node_modules" && find . -maxdepth 3 -name package.json -printf '%h\n' | sed 's|^\./||' | sort); do
    lic=$(node -p "const p = require('$lib/node_modules/$p/package.json'); p.license || (p.licenses && p.licenses.map((l) => l.type).join(' or ')) || 'see the module'")
    printf '\nFiles: usr/lib/lockdrop/node_modules/%s/*\nCopyright: the %s authors\nLicense: %s\n' "$p" "$p" "$lic"
  done
  cat packaging/deb/mit.txt
} > "$doc/copyright"
for page in man/*.[0-9]; do
  section=${page##*.}
  gzip -9n -c "$page" > "$root/usr/share/man/man$section/$(basename "$page").gz"
done

# Shared libraries the addon links (libbpf1, libc6, libstdc++6, ...), as dpkg-shlibdeps finds them.
shl=$repo/build/shlibdeps
rm -rf "$shl" && mkdir -p "$shl/debian"
printf 'Source: lockdrop\n\nPackage: lockdrop\nArchitecture: any\n' > "$shl/debian/control"
shlibs=$(cd "$shl" && dpkg-shlibdeps -O "$lib/native/build/Release/lockdrop.node" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "package: dpkg-shlibdeps found no libraries for the addon" >&2; exit 1; }
rm -rf "$shl"

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" -e "s|@SIZE@|$size|" \
  -e "s|@SHLIBS@|$shlibs|" -e "s|@HOMEPAGE@|$homepage|" packaging/deb/control.in > "$root/DEBIAN/control"
install -m 0644 packaging/deb/conffiles "$root/DEBIAN/conffiles"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
rm -rf "$root"
echo "$out"

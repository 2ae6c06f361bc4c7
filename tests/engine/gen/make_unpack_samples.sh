#!/bin/sh
# make_unpack_samples.sh - builds the containers tests/engine/test_unpack.c reads, with Debian's
# own tools, into OUTDIR (created if missing). Every container holds evil.ps1, whose text carries
# the test signature, next to a clean file; the nested ones hold it several levels down.
#
# Tools (Debian packages): zip, gzip, bzip2, xz-utils, tar, cpio, binutils (ar), p7zip-full (7z),
# gcab, genisoimage, libarchive-tools (bsdtar: xar, zip with data descriptors), arj.
# RAR, LHA and the synthetic ZIPs (bombs, 100,000 entries) are written by gen_containers.c.
#
# Usage: sh tests/engine/gen/make_unpack_samples.sh OUTDIR
# Exit status 0 when every container was built; 1 with the missing tool named otherwise.
set -eu

out=${1:?usage: make_unpack_samples.sh OUTDIR}
mkdir -p "$out"
cd "$out"

for t in zip gzip bzip2 xz tar cpio ar 7z gcab genisoimage bsdtar arj; do
    command -v "$t" >/dev/null 2>&1 || { echo "make_unpack_samples.sh: missing tool: $t" >&2; exit 1; }
done

sig='AMSI-UNPACK-SIGNATURE-41c7'

rm -rf src && mkdir -p src/dir
printf "Write-Output 'stage two'\n# %s\nInvoke-Expression \$payload\n" "$sig" > src/evil.ps1
i=0
: > src/clean.txt
while [ $i -lt 400 ]; do
    echo "line $i of a perfectly ordinary text file, nothing to see here" >> src/clean.txt
    i=$((i + 1))
done
cp src/evil.ps1 src/dir/evil.ps1
touch -d '2024-01-02 03:04:05' src/evil.ps1 src/clean.txt src/dir src/dir/evil.ps1

( cd src
  # ZIP: deflate, stored, bzip2, forced ZIP64, data descriptors (bsdtar writes them), a member
  # read from a pipe, a JAR, an encrypted member, an OOXML look-alike.
  rm -f ../*.zip ../*.jar
  zip -q -X ../zip_deflate.zip clean.txt evil.ps1
  zip -q -X -0 ../zip_stored.zip clean.txt evil.ps1
  zip -q -X -Z bzip2 ../zip_bzip2.zip clean.txt evil.ps1
  zip -q -X -fz ../zip_zip64.zip clean.txt evil.ps1
  bsdtar --format zip -cf ../zip_dd.zip clean.txt evil.ps1
  zip -q -X ../zip_pipe.zip - < evil.ps1
  mkdir -p META-INF && printf 'Manifest-Version: 1.0\n' > META-INF/MANIFEST.MF
  zip -q -X ../app.jar META-INF/MANIFEST.MF evil.ps1
  rm -rf META-INF
  zip -q -X -P secret ../zip_enc.zip clean.txt evil.ps1
  printf '<?xml version="1.0"?><Types/>' > '[Content_Types].xml'
  zip -q -X ../ooxml.zip '[Content_Types].xml' evil.ps1
  rm -f '[Content_Types].xml'

  # TAR in every header format.
  tar --format=ustar -cf ../tar_ustar.tar clean.txt evil.ps1
  tar --format=gnu -cf ../tar_gnu.tar clean.txt evil.ps1
  tar --format=pax -cf ../tar_pax.tar clean.txt evil.ps1
  tar --format=v7 -cf ../tar_v7.tar clean.txt evil.ps1

  # 7z: LZMA2, solid with a directory, encrypted data, encrypted headers.
  rm -f ../*.7z
  7z a -bd -y ../a.7z clean.txt evil.ps1 >/dev/null
  7z a -bd -y -ms=on ../solid.7z clean.txt dir >/dev/null
  7z a -bd -y -psecret ../enc.7z clean.txt evil.ps1 >/dev/null
  7z a -bd -y -psecret -mhe=on ../enchdr.7z clean.txt evil.ps1 >/dev/null

  # CAB stored and MSZIP.
  gcab -c -n ../a.cab clean.txt evil.ps1
  gcab -c -n -z ../mszip.cab clean.txt evil.ps1

  # ISO 9660 with Rock Ridge and Joliet.
  genisoimage -quiet -R -J -o ../a.iso clean.txt evil.ps1 2>/dev/null

  # CPIO in every variant.
  for h in newc odc crc bin; do
      printf 'clean.txt\nevil.ps1\n' | cpio --quiet -o -H $h > ../$h.cpio
  done

  # XAR, ar, and a .deb-shaped ar (debian-binary, control.tar.gz, data.tar.xz).
  bsdtar --format xar -cf ../a.xar clean.txt evil.ps1
  rm -f ../a.ar ../fake.deb
  ar rc ../a.ar clean.txt evil.ps1
  printf '2.0\n' > debian-binary
  printf 'Package: fake\n' > control && tar -czf control.tar.gz control
  mkdir -p usr/share/fake && cp evil.ps1 usr/share/fake/ && tar -cJf data.tar.xz usr
  ar rc ../fake.deb debian-binary control.tar.gz data.tar.xz
  rm -rf debian-binary control control.tar.gz usr data.tar.xz

  # Compression layers, single and concatenated.
  gzip -9 -n -c evil.ps1 > ../evil.ps1.gz
  bzip2 -9 -c evil.ps1 > ../evil.ps1.bz2
  xz -c evil.ps1 > ../evil.ps1.xz
  { gzip -n -c clean.txt; gzip -n -c evil.ps1; } > ../cat.gz
  { bzip2 -c clean.txt; bzip2 -c evil.ps1; } > ../cat.bz2
  { xz -c clean.txt; xz -c evil.ps1; } > ../cat.xz

  # ARJ, plain and garbled (password protected).
  rm -f ../a.arj ../enc.arj
  arj a -y ../a.arj clean.txt evil.ps1 >/dev/null
  arj a -y -gsecret ../enc.arj clean.txt evil.ps1 >/dev/null

  # A sparse file of 1 GiB with no data at all: a ratio bomb in plain TAR.
  truncate -s 1G sparse.bin && tar --format=gnu -S -cf ../sparse.tar sparse.bin && rm sparse.bin

  # Nesting: payload.tar.gz (two steps), and a five-step chain
  # l5.cpio > l4.7z > l3.tar.xz > xz > l2.tar > l1.zip > evil.ps1.
  tar -cf payload.tar evil.ps1 && gzip -n -c payload.tar > ../payload.tar.gz && rm payload.tar
  rm -f l1.zip l4.7z
  zip -q -X l1.zip evil.ps1
  tar -cf l2.tar l1.zip
  xz -c l2.tar > l3.tar.xz
  7z a -bd -y l4.7z l3.tar.xz >/dev/null
  echo l4.7z | cpio --quiet -o -H newc > ../l5.cpio
  rm -f l1.zip l2.tar l3.tar.xz l4.7z
)

# Self-extractors: an executable-looking stub with the archive appended, as is (offsets relative
# to the archive) and, for the ZIP, with offsets adjusted to the whole file (zip -A).
{ printf 'MZ'; head -c 8190 /dev/zero | tr '\0' 'A'; } > stub.bin
cat stub.bin zip_deflate.zip > sfx_zip.exe
cp sfx_zip.exe sfx_zip_adj.exe && zip -q -A sfx_zip_adj.exe
cat stub.bin a.7z > sfx_7z.exe
cat stub.bin a.arj > sfx_arj.exe
cat stub.bin a.cab > sfx_cab.exe
rm -f stub.bin
rm -rf src

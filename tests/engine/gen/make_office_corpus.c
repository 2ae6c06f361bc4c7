/*
 * make_office_corpus.c - writes the seed corpora of the Office fuzz targets from the test
 * generators (gen_office.c): tests/fuzz/corpus/ovba (compressed containers and dir streams),
 * tests/fuzz/corpus/ole2 (small compound files of each kind) and tests/fuzz/corpus/ppt
 * (PowerPoint Document streams). Usage: make_office_corpus CORPUS_DIR. Exit 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen/gen_office.h"

static const char *root;
static int failures;

static void save(const char *sub, const char *name, const gen_buf *b)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s/%s", root, sub, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(b->p, 1, b->n, f) != b->n) {
        perror(path);
        failures++;
    }
    if (f != NULL)
        fclose(f);
}

static const char vba[] = "Attribute VB_Name = \"Module1\"\r\nSub AutoOpen()\r\n"
                          "    Shell \"cmd /c echo hello\"\r\nEnd Sub\r\n";

static void ovba(void)
{
    gen_buf b = {0};
    gen_ovba_compress(vba, sizeof(vba) - 1, &b);
    save("ovba", "module.bin", &b);
    gen_buf_free(&b);
    char noise[5000];
    for (size_t i = 0; i < sizeof(noise); i++)
        noise[i] = (char)(i * 131 + (i >> 3));
    gen_ovba_compress(noise, sizeof(noise), &b);
    save("ovba", "raw_chunk.bin", &b);
    gen_buf_free(&b);
    const char *names[2] = {"ThisDocument", "Module1"};
    uint32_t offs[2] = {0, 333};
    gen_vba_dir(names, offs, 2, &b);
    save("ovba", "dir.bin", &b);
    gen_buf_free(&b);
}

static void ole2(void)
{
    gen_buf b = {0}, w = {0}, t = {0}, x = {0}, nat = {0}, s = {0};
    gen_part parts[6];
    gen_buf bufs[3];
    char paths[3][128];
    gen_vba_project("Macros/VBA", "Module1", vba, parts, bufs, paths);
    gen_word("Hello from Word", false, &w, &t);
    parts[3] = (gen_part){"WordDocument", w.p, w.n};
    parts[4] = (gen_part){"1Table", t.p, t.n};
    gen_ole2(parts, 5, NULL, &b);
    save("ole2", "vba.doc", &b);
    gen_buf_free(&b);
    for (int i = 0; i < 3; i++)
        gen_buf_free(&bufs[i]);
    gen_buf_free(&w);
    gen_buf_free(&t);

    gen_ole10native("a.txt", "C:\\a.txt", "payload", 7, &nat);
    gen_part np = {"ObjectPool/_1/\001Ole10Native", nat.p, nat.n};
    gen_ole2(&np, 1, NULL, &b);
    save("ole2", "native.doc", &b);
    gen_buf_free(&b);

    gen_workbook_sst("shared string text", &x);
    gen_part sp = {"Workbook", x.p, x.n};
    gen_ole2(&sp, 1, NULL, &b);
    save("ole2", "sst.xls", &b);
    gen_buf_free(&b);
    gen_buf_free(&x);

    gen_workbook("cell text", true, &x);
    gen_part xp = {"Workbook", x.p, x.n};
    gen_ole2(&xp, 1, NULL, &b);
    save("ole2", "filepass.xls", &b);
    gen_buf_free(&b);
    gen_buf_free(&x);

    gen_ppt_document(nat.p, nat.n, true, &s);
    gen_part pp = {"PowerPoint Document", s.p, s.n};
    gen_ole2(&pp, 1, NULL, &b);
    save("ole2", "deck.ppt", &b);
    gen_buf_free(&b);
    gen_buf_free(&s);
    gen_buf_free(&nat);

    char packed[64];
    gen_msi_name("data.cab", packed, sizeof(packed));
    gen_part mp = {packed, "MSCF\0\0\0\0", 8};
    gen_ole2(&mp, 1, gen_msi_clsid, &b);
    save("ole2", "setup.msi", &b);
    gen_buf_free(&b);

    static const uint8_t noise[64] = {4, 0, 4, 0, 0x40};
    gen_part ep[2] = {{"EncryptedPackage", noise, 64}, {"EncryptionInfo", noise, 64}};
    gen_ole2(ep, 2, NULL, &b);
    save("ole2", "encrypted.docx", &b);
    gen_buf_free(&b);
}

static void ppt(void)
{
    gen_buf b = {0};
    gen_ppt_document("embedded object bytes", 21, true, &b);
    save("ppt", "compressed.bin", &b);
    gen_buf_free(&b);
    gen_ppt_document("embedded object bytes", 21, false, &b);
    save("ppt", "stored.bin", &b);
    gen_buf_free(&b);
    static const uint8_t crypt[16] = {0x0F, 0x00, 0x14, 0x2F, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    gen_put(&b, crypt, sizeof(crypt));
    save("ppt", "crypt.bin", &b);
    gen_buf_free(&b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    root = argv[1];
    gen_office_init();
    ovba();
    ole2();
    ppt();
    return failures ? 1 : 0;
}

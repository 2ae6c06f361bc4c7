/*
 * arj.c - the ARJ archive reader: header walk, CRC-32, and the two decoders (methods 1-3 and
 * method 4). See arj.h for the contract; this file says how.
 *
 * Layout of an archive (all numbers little-endian). Every header, main or member, is
 *
 *     60 EA | size:16 | basic header (size bytes, at most 2600) | CRC-32 of the basic header:32
 *     then extended headers: size:16, and when size > 0, size bytes and their CRC-32:32, repeated
 *     until a size of 0.
 *
 * A basic header starts with first_hdr_size (the fixed part, at least 30 bytes), then version,
 * minimum version, host OS, flags, method, file type, a reserved byte, the DOS time, compressed
 * size, original size, CRC-32 of the original, filespec position, file mode and two host bytes;
 * then optional extra data up to first_hdr_size (the first four bytes of which are the continued
 * file's position when the EXTFILE flag is set), then the NUL-terminated name and comment. The
 * main header comes first (file type 2); each member header is followed by its compressed bytes;
 * 60 EA 00 00 ends the archive. The layout comes from Robert Jung's "ARJ technical information"
 * notes shipped with UNARJ; the decoders' constants (window, table sizes, method 4's widths) from
 * the published UNARJ decoder's definitions; everything was checked against archives made by
 * Debian's arj 3.10 (see tests/engine/gen/make_arj_samples.sh).
 *
 * Methods 1 to 3 are LZ77 over a 26,624-byte window with static Huffman codes sent per block, the
 * scheme of Okumura's ar002 that LHA's -lh5- also uses, with ARJ's constants. The bit stream is
 * read most significant bit first. A block starts with its symbol count (16 bits), then three
 * code-length tables:
 *
 *  - "t", the pretable (19 symbols): a 5-bit count n; if n is 0, a 5-bit symbol that is the only
 *    one (coded in zero bits). Otherwise n lengths, each 3 bits, where 7 means "7 plus the number
 *    of 1 bits that follow, up to a 0"; after the third length a 2-bit count of zero lengths.
 *  - "c", literals and lengths (510 symbols): a 9-bit count n, or 0 and a 9-bit single symbol.
 *    Otherwise each length is a t symbol: 0 means one zero length, 1 means 3 plus a 4-bit count of
 *    zero lengths, 2 means 20 plus a 9-bit count, and k >= 3 means length k - 2.
 *  - "p", position slots (17 symbols): coded like "t" (5-bit count) without the zero-run escape.
 *
 * Codes are canonical: shorter codes first, equal lengths in symbol order. Then come the block's
 * symbols: a c symbol below 256 is a literal byte; otherwise it is a match of length symbol - 253
 * (3 to 256) whose distance minus one is decoded from a p slot j: 0 for j = 0, otherwise 2^(j-1)
 * plus j-1 more bits. The stream has no end marker; it stops when the original size is reached.
 *
 * Method 4 has no Huffman stage. A length code is k one bits (k from 0 to 7; a 0 bit ends the run
 * unless all seven are there), then k more bits v: the value is 2^k - 1 + v. Value 0 is a literal
 * (8 bits follow); n > 0 is a match of length n + 2 whose distance minus one is k one bits (k from
 * 0 to 4, same rule), then 9 + k bits v: 2^9 * (2^k - 1) + v, at most 15,871.
 *
 * Defences: a bit read past the member's compressed bytes is ETRUNC (bits are peeked from a zero
 * padded buffer and the overrun is noticed when consumed, before any byte derived from it is
 * written); a table's lengths must form a complete prefix code (or be all zero, which makes any
 * use of the table an error); counts, runs and single symbols are range-checked; a match may not
 * reach before the first byte of the member. All state has a fixed size.
 */
#include "arj.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define ARJ_ID0           0x60u
#define ARJ_ID1           0xEAu
#define ARJ_HDR_MAX       2600u /* largest basic header */
#define ARJ_FIRST_MIN     30u   /* smallest fixed part of a basic header */
#define ARJ_TYPE_MAIN     2u    /* file type of the main header */
#define ARJ_DICSIZ        26624u
#define ARJ_THRESHOLD     3u
#define ARJ_NC            510u /* 256 literals + 254 match lengths */
#define ARJ_NP            17u  /* position slots */
#define ARJ_NT            19u  /* pretable symbols */
#define ARJ_CBIT          9u
#define ARJ_PBIT          5u
#define ARJ_TBIT          5u
#define ARJ_MAXBITS       16u /* longest Huffman code */
#define ARJ_C_FAST        12u /* bits resolved by one lookup in the c table */
#define ARJ_PT_FAST       8u  /* ... in the t and p tables */
#define ARJ_CRC_INIT      0xFFFFFFFFu
#define ARJ_SEARCH_BUDGET (1024u * 1024u) /* header bytes CRC-checked by the search */

/* What a Huffman table is able to decode. */
enum { HUFF_EMPTY, HUFF_SINGLE, HUFF_CODE };

/*
 * A canonical Huffman decoding table. fast[] maps the next fast_bits bits to (length << 9 | symbol)
 * for codes no longer than fast_bits, and to 0 for the prefixes of longer codes, which are decoded
 * from count[] and sym[] (symbols sorted by code length, then value) one bit at a time.
 */
typedef struct arj_huff {
    uint8_t kind;
    uint8_t fast_bits;
    uint16_t single;
    uint16_t count[ARJ_MAXBITS + 1];
    uint16_t sym[ARJ_NC];
    uint16_t fast[1u << ARJ_C_FAST];
} arj_huff;

/* Where the reader is in the archive. */
enum { ST_BEFORE, ST_MEMBER, ST_END, ST_FAILED };

struct engine__arj {
    const uint8_t *data;
    size_t len;
    int state;
    int hdr_err;     /* the sticky error of ST_FAILED */
    size_t next_hdr; /* offset of the next member header */

    /* The current member. */
    uint8_t method;
    uint8_t flags;
    uint32_t orig_size;
    uint32_t comp_size;
    uint32_t want_crc;
    uint32_t crc;      /* running CRC-32 (pre-inverted) of what was produced */
    uint32_t produced; /* bytes produced so far, at most orig_size */
    int member_err;    /* sticky error of this member */
    bool started;      /* the first read has set the decoder up */

    /* Bit reader over data[in_pos..in_end): MSB-first, bitbuf holds bitcnt bits at its top. */
    size_t in_pos;
    size_t in_end;
    uint64_t bitbuf;
    unsigned bitcnt;
    unsigned pad; /* zero bits appended past in_end, at the bottom of the buffered bits */
    int bit_err;  /* set when a consumed bit was padding */

    /* LZ77 state shared by the decoders. */
    uint32_t wpos;       /* next write position in window */
    uint32_t match_left; /* bytes of the current match still to copy */
    uint32_t match_dist; /* its distance (1 = the previous byte) */
    uint32_t block_left; /* symbols left in the current block (methods 1-3) */

    arj_huff t_table;
    arj_huff c_table;
    arj_huff p_table;
    uint8_t window[ARJ_DICSIZ];
    uint32_t crc_table[256];
};

/* A parsed header. */
typedef struct arj_header {
    bool end;         /* the 60 EA 00 00 end marker */
    size_t next;      /* offset just past the header and its extended headers */
    const uint8_t *b; /* the basic header */
    uint16_t size;    /* its size */
    const char *name; /* NUL-terminated inside b */
    size_t name_len;
} arj_header;

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

/* Little-endian loads. Can't fail. */
static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Fills the reader's CRC-32 table (reflected polynomial 0xEDB88320). Can't fail. */
static void crc_init(uint32_t table[256])
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        table[i] = c;
    }
}

/* Continues a pre-inverted CRC-32 over p[0..n). Can't fail. */
static uint32_t crc_update(const uint32_t table[256], uint32_t crc, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
    return crc;
}

/* Returns the CRC-32 of p[0..n). Can't fail. */
static uint32_t crc_of(const uint32_t table[256], const uint8_t *p, size_t n)
{
    return crc_update(table, ARJ_CRC_INIT, p, n) ^ ARJ_CRC_INIT;
}

/* ---------------------------------------------------------------------------------------------
 * Headers
 * ------------------------------------------------------------------------------------------- */

/*
 * Parses the header at data[pos]: id, size, CRC, the fixed part, name and comment, then skips the
 * extended headers (each CRC-checked). Returns 0 with *h filled (h->end for the end marker),
 * ENGINE__ARJ_ETRUNC when the input ends inside it, ENGINE__ARJ_EFORMAT when it is not a valid
 * header.
 */
static int parse_header(const engine__arj *a, size_t pos, arj_header *h)
{
    const uint8_t *d = a->data;
    size_t len = a->len;

    memset(h, 0, sizeof(*h));
    if (pos > len || len - pos < 2)
        return (pos < len && d[pos] != ARJ_ID0) ? ENGINE__ARJ_EFORMAT : ENGINE__ARJ_ETRUNC;
    if (d[pos] != ARJ_ID0 || d[pos + 1] != ARJ_ID1)
        return ENGINE__ARJ_EFORMAT;
    if (len - pos < 4)
        return ENGINE__ARJ_ETRUNC;
    uint16_t size = rd16(d + pos + 2);
    if (size == 0) {
        h->end = true;
        h->next = pos + 4;
        return 0;
    }
    if (size < ARJ_FIRST_MIN || size > ARJ_HDR_MAX)
        return ENGINE__ARJ_EFORMAT;
    if (len - pos - 4 < (size_t)size + 4)
        return ENGINE__ARJ_ETRUNC;
    const uint8_t *b = d + pos + 4;
    if (crc_of(a->crc_table, b, size) != rd32(b + size))
        return ENGINE__ARJ_EFORMAT;
    unsigned first = b[0];
    if (first < ARJ_FIRST_MIN || first > size)
        return ENGINE__ARJ_EFORMAT;
    const uint8_t *name = b + first;
    const uint8_t *nul = memchr(name, 0, size - first);
    if (nul == NULL)
        return ENGINE__ARJ_EFORMAT;
    const uint8_t *comment = nul + 1;
    size_t left = (size_t)(b + size - comment);
    if (left == 0 || memchr(comment, 0, left) == NULL)
        return ENGINE__ARJ_EFORMAT;

    size_t p = pos + 4 + size + 4;
    for (;;) {
        if (len - p < 2)
            return ENGINE__ARJ_ETRUNC;
        uint16_t esize = rd16(d + p);
        p += 2;
        if (esize == 0)
            break;
        if (len - p < (size_t)esize + 4)
            return ENGINE__ARJ_ETRUNC;
        if (crc_of(a->crc_table, d + p, esize) != rd32(d + p + esize))
            return ENGINE__ARJ_EFORMAT;
        p += (size_t)esize + 4;
    }
    h->next = p;
    h->b = b;
    h->size = size;
    h->name = (const char *)name;
    h->name_len = (size_t)(nul - name);
    return 0;
}

/*
 * Finds the main header: at offset 0, else the first valid one below ENGINE__ARJ_SFX_MAX. Stores
 * the offset of the first member header in a->next_hdr. Returns 0, ENGINE__ARJ_ETRUNC when a
 * candidate ran past the end of the input and none was valid, ENGINE__ARJ_EFORMAT otherwise.
 *
 * Candidates that pass the cheap checks (id, size, file type) cost a CRC over their claimed size;
 * a stub stuffed with such decoys (one every 4 bytes is possible) would cost a quarter of a second
 * over the whole window, so the search stops with EFORMAT once ARJ_SEARCH_BUDGET header bytes
 * were checked. Real stubs hold a handful of chance matches at most.
 */
static int find_main_header(engine__arj *a)
{
    const uint8_t *d = a->data;
    size_t limit = a->len < ENGINE__ARJ_SFX_MAX ? a->len : ENGINE__ARJ_SFX_MAX;
    bool truncated = false;
    size_t budget = ARJ_SEARCH_BUDGET;

    for (size_t off = 0; off < limit; off++) {
        const uint8_t *hit = memchr(d + off, ARJ_ID0, limit - off);
        if (hit == NULL)
            break;
        off = (size_t)(hit - d);
        if (off + 1 == a->len) {
            /* A lone 0x60 ends the input: a cut archive only if it is the whole input. */
            truncated = truncated || off == 0;
            break;
        }
        if (d[off + 1] != ARJ_ID1)
            continue;
        if (off + 4 <= a->len) {
            /* Cheap checks before the CRC: a plausible size and a main header's file type. */
            uint16_t size = rd16(d + off + 2);
            if (size < ARJ_FIRST_MIN || size > ARJ_HDR_MAX)
                continue;
            if (off + 4 + 6 < a->len && d[off + 4 + 6] != ARJ_TYPE_MAIN)
                continue;
            if (size > budget)
                break;
            budget -= size;
        }
        arj_header h;
        int rc = parse_header(a, off, &h);
        if (rc == ENGINE__ARJ_ETRUNC) {
            truncated = true;
            continue;
        }
        if (rc != 0 || h.end || h.b[6] != ARJ_TYPE_MAIN)
            continue;
        a->next_hdr = h.next;
        return 0;
    }
    return truncated ? ENGINE__ARJ_ETRUNC : ENGINE__ARJ_EFORMAT;
}

int engine__arj_open(const uint8_t *data, size_t len, engine__arj **out)
{
    if (out == NULL)
        return ENGINE__ARJ_EINVAL;
    *out = NULL;
    if (data == NULL && len != 0)
        return ENGINE__ARJ_EINVAL;

    engine__arj *a = malloc(sizeof(*a));
    if (a == NULL)
        return ENGINE__ARJ_ENOMEM;
    memset(a, 0, offsetof(engine__arj, t_table));
    a->data = data;
    a->len = data == NULL ? 0 : len;
    a->state = ST_BEFORE;
    crc_init(a->crc_table);

    int rc = find_main_header(a);
    if (rc != 0) {
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int engine__arj_next(engine__arj *a, engine__arj_entry *e)
{
    if (a == NULL || e == NULL)
        return ENGINE__ARJ_EINVAL;
    if (a->state == ST_END)
        return 1;
    if (a->state == ST_FAILED)
        return a->hdr_err;

    size_t pos = a->next_hdr;
    arj_header h;
    int rc = parse_header(a, pos, &h);
    if (rc == 0 && h.end) {
        a->state = ST_END;
        return 1;
    }
    if (rc != 0) {
        a->state = ST_FAILED;
        a->hdr_err = rc;
        return rc;
    }

    const uint8_t *b = h.b;
    memset(e, 0, sizeof(*e));
    memcpy(e->name, h.name, h.name_len + 1); /* name_len < ARJ_HDR_MAX == sizeof(e->name) */
    e->host_os = b[3];
    e->flags = b[4];
    e->method = b[5];
    e->file_type = b[6];
    e->mtime = rd32(b + 8);
    e->comp_size = rd32(b + 12);
    e->orig_size = rd32(b + 16);
    e->crc32 = rd32(b + 20);
    e->file_mode = rd16(b + 26);
    if ((e->flags & ENGINE__ARJ_FLAG_EXTFILE) && b[0] >= ARJ_FIRST_MIN + 4)
        e->ext_pos = rd32(b + 30);
    e->header_offset = pos;

    a->state = ST_MEMBER;
    a->method = e->method;
    a->flags = e->flags;
    a->orig_size = e->orig_size;
    a->comp_size = e->comp_size;
    a->want_crc = e->crc32;
    a->crc = ARJ_CRC_INIT;
    a->produced = 0;
    a->member_err = 0;
    a->started = false;
    a->in_pos = h.next;
    if (e->comp_size <= a->len - h.next) {
        a->in_end = h.next + e->comp_size;
        a->next_hdr = a->in_end;
    } else {
        /* The data runs past the input: read what is there, then the next header is ETRUNC. */
        a->in_end = a->len;
        a->next_hdr = SIZE_MAX;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Bit reader
 * ------------------------------------------------------------------------------------------- */

/* Tops the bit buffer up to at least 57 bits, with zero padding past in_end. Can't fail. */
static void bits_refill(engine__arj *a)
{
    while (a->bitcnt <= 56) {
        uint64_t byte = 0;
        if (a->in_pos < a->in_end)
            byte = a->data[a->in_pos++];
        else
            a->pad += 8;
        a->bitbuf |= byte << (56 - a->bitcnt);
        a->bitcnt += 8;
    }
}

/* Returns the next n bits (1 <= n <= 32) without consuming them. Can't fail. */
static uint32_t bits_peek(engine__arj *a, unsigned n)
{
    if (a->bitcnt < n)
        bits_refill(a);
    return (uint32_t)(a->bitbuf >> (64 - n));
}

/* Consumes n bits (n <= 32) already peeked; notes an overrun in bit_err. Can't fail. */
static void bits_drop(engine__arj *a, unsigned n)
{
    a->bitbuf <<= n;
    a->bitcnt -= n;
    if (a->bitcnt < a->pad)
        a->bit_err = ENGINE__ARJ_ETRUNC;
}

/* Reads n bits (0 <= n <= 16). An overrun yields zeros and sets bit_err. Can't fail. */
static unsigned bits_get(engine__arj *a, unsigned n)
{
    if (n == 0)
        return 0;
    unsigned v = bits_peek(a, n);
    bits_drop(a, n);
    return v;
}

/* ---------------------------------------------------------------------------------------------
 * Huffman tables
 * ------------------------------------------------------------------------------------------- */

/*
 * Builds h from the code lengths len[0..n) (each at most 16). All-zero lengths make an empty table
 * (decoding from it fails); otherwise the lengths must form a complete prefix code: neither
 * over-subscribed (which would assign one code twice) nor incomplete (which would leave bit
 * patterns that decode to nothing). Returns 0 or ENGINE__ARJ_EFORMAT.
 */
static int huff_build(arj_huff *h, const uint8_t *len, unsigned n, unsigned fast_bits)
{
    uint16_t offs[ARJ_MAXBITS + 2];

    memset(h->count, 0, sizeof(h->count));
    for (unsigned i = 0; i < n; i++) {
        if (len[i] > ARJ_MAXBITS)
            return ENGINE__ARJ_EFORMAT;
        h->count[len[i]]++;
    }
    h->fast_bits = (uint8_t)fast_bits;
    if (h->count[0] == n) {
        h->kind = HUFF_EMPTY;
        return 0;
    }
    /* Kraft: the codes of each length must fit the space the shorter ones left. */
    int32_t left = 1;
    for (unsigned l = 1; l <= ARJ_MAXBITS; l++) {
        left = left * 2 - h->count[l];
        if (left < 0)
            return ENGINE__ARJ_EFORMAT;
    }
    if (left != 0)
        return ENGINE__ARJ_EFORMAT;

    offs[1] = 0;
    for (unsigned l = 1; l <= ARJ_MAXBITS; l++)
        offs[l + 1] = (uint16_t)(offs[l] + h->count[l]);
    for (unsigned i = 0; i < n; i++)
        if (len[i] != 0)
            h->sym[offs[len[i]]++] = (uint16_t)i;

    /* Spread each short code over every fast index that starts with it. */
    unsigned size = 1u << fast_bits;
    memset(h->fast, 0, size * sizeof(h->fast[0]));
    unsigned code = 0, idx = 0;
    for (unsigned l = 1; l <= fast_bits; l++) {
        for (unsigned k = 0; k < h->count[l]; k++, code++, idx++) {
            unsigned lo = code << (fast_bits - l);
            unsigned hi = (code + 1) << (fast_bits - l);
            uint16_t v = (uint16_t)(l << 9 | h->sym[idx]);
            for (unsigned f = lo; f < hi; f++)
                h->fast[f] = v;
        }
        code <<= 1;
    }
    h->kind = HUFF_CODE;
    return 0;
}

/* Makes h decode to sym without reading a bit. Can't fail. */
static void huff_single(arj_huff *h, unsigned sym)
{
    h->kind = HUFF_SINGLE;
    h->single = (uint16_t)sym;
}

/*
 * Decodes one symbol with h into *sym. Returns 0 or ENGINE__ARJ_EFORMAT (empty table); an overrun
 * shows in bit_err.
 */
static int huff_decode(engine__arj *a, const arj_huff *h, unsigned *sym)
{
    if (h->kind == HUFF_SINGLE) {
        *sym = h->single;
        return 0;
    }
    if (h->kind != HUFF_CODE)
        return ENGINE__ARJ_EFORMAT;
    uint32_t bits = bits_peek(a, ARJ_MAXBITS);
    uint16_t v = h->fast[bits >> (ARJ_MAXBITS - h->fast_bits)];
    if (v != 0) {
        bits_drop(a, v >> 9);
        *sym = v & 0x1FFu;
        return 0;
    }
    /* A long code: walk the canonical code one bit at a time. */
    uint32_t code = 0, first = 0, index = 0;
    for (unsigned l = 1; l <= ARJ_MAXBITS; l++) {
        code |= (bits >> (ARJ_MAXBITS - l)) & 1u;
        uint32_t cnt = h->count[l];
        if (code < first + cnt) {
            bits_drop(a, l);
            *sym = h->sym[index + code - first];
            return 0;
        }
        index += cnt;
        first = (first + cnt) << 1;
        code <<= 1;
    }
    return ENGINE__ARJ_EFORMAT; /* unreachable for a complete code */
}

/*
 * Reads a "t" or "p" table: nn symbols, an nbit count, and after the i_special-th length a 2-bit
 * run of zeros (i_special 0 for none). Returns 0 or ENGINE__ARJ_EFORMAT.
 */
static int read_pt_table(engine__arj *a, arj_huff *h, unsigned nn, unsigned nbit,
                         unsigned i_special)
{
    uint8_t len[ARJ_NT];
    unsigned n = bits_get(a, nbit);

    if (n == 0) {
        unsigned c = bits_get(a, nbit);
        if (c >= nn)
            return ENGINE__ARJ_EFORMAT;
        huff_single(h, c);
        return 0;
    }
    if (n > nn)
        return ENGINE__ARJ_EFORMAT;
    memset(len, 0, sizeof(len));
    unsigned i = 0;
    while (i < n) {
        unsigned c = bits_get(a, 3);
        if (c == 7) {
            while (bits_get(a, 1) == 1) {
                if (++c > ARJ_MAXBITS)
                    return ENGINE__ARJ_EFORMAT;
            }
        }
        if (a->bit_err)
            return a->bit_err;
        len[i++] = (uint8_t)c;
        if (i == i_special) {
            unsigned zeros = bits_get(a, 2);
            if (i + zeros > nn)
                return ENGINE__ARJ_EFORMAT;
            i += zeros; /* len[] is already zero there */
        }
    }
    return huff_build(h, len, nn, ARJ_PT_FAST);
}

/* Reads the "c" table with the pretable. Returns 0 or ENGINE__ARJ_EFORMAT. */
static int read_c_table(engine__arj *a)
{
    uint8_t len[ARJ_NC];
    unsigned n = bits_get(a, ARJ_CBIT);

    if (n == 0) {
        unsigned c = bits_get(a, ARJ_CBIT);
        if (c >= ARJ_NC)
            return ENGINE__ARJ_EFORMAT;
        huff_single(&a->c_table, c);
        return 0;
    }
    if (n > ARJ_NC)
        return ENGINE__ARJ_EFORMAT;
    memset(len, 0, sizeof(len));
    unsigned i = 0;
    while (i < n) {
        unsigned c;
        int rc = huff_decode(a, &a->t_table, &c);
        if (rc != 0)
            return rc;
        if (a->bit_err)
            return a->bit_err;
        if (c <= 2) {
            unsigned zeros = c == 0 ? 1 : c == 1 ? bits_get(a, 4) + 3 : bits_get(a, ARJ_CBIT) + 20;
            if (i + zeros > ARJ_NC)
                return ENGINE__ARJ_EFORMAT;
            i += zeros;
        } else {
            len[i++] = (uint8_t)(c - 2);
        }
    }
    return huff_build(&a->c_table, len, ARJ_NC, ARJ_C_FAST);
}

/* ---------------------------------------------------------------------------------------------
 * Decoders: each yields one literal (*dist = 0) or one match (*len, *dist).
 * ------------------------------------------------------------------------------------------- */

/* One symbol of methods 1-3, reading a block header first when the block is used up. */
static int lzh_symbol(engine__arj *a, unsigned *lit, uint32_t *len, uint32_t *dist)
{
    if (a->block_left == 0) {
        unsigned n = bits_get(a, 16);
        int rc = read_pt_table(a, &a->t_table, ARJ_NT, ARJ_TBIT, 3);
        if (rc == 0)
            rc = read_c_table(a);
        if (rc == 0)
            rc = read_pt_table(a, &a->p_table, ARJ_NP, ARJ_PBIT, 0);
        if (a->bit_err)
            return a->bit_err;
        if (rc != 0)
            return rc;
        a->block_left = n == 0 ? 65536u : n; /* a count of 0 stands for 65536, as in ARJ */
    }
    a->block_left--;

    unsigned c;
    int rc = huff_decode(a, &a->c_table, &c);
    if (rc != 0)
        return rc;
    if (c < 256) {
        *lit = c;
        *dist = 0;
        return 0;
    }
    *len = c - 256 + ARJ_THRESHOLD;
    unsigned j;
    rc = huff_decode(a, &a->p_table, &j);
    if (rc != 0)
        return rc;
    uint32_t d = 0;
    if (j != 0)
        d = (1u << (j - 1)) + bits_get(a, j - 1);
    *dist = d + 1;
    return 0;
}

/* Reads a method-4 number: up to `steps` unary 1 bits above a base width of `width` bits. */
static uint32_t fastest_number(engine__arj *a, unsigned width, unsigned steps)
{
    uint32_t plus = 0, pwr = 1u << width;
    unsigned w = width;
    while (w < width + steps && bits_get(a, 1) == 1) {
        plus += pwr;
        pwr <<= 1;
        w++;
    }
    return plus + bits_get(a, w);
}

/* One symbol of method 4. */
static int fastest_symbol(engine__arj *a, unsigned *lit, uint32_t *len, uint32_t *dist)
{
    uint32_t c = fastest_number(a, 0, 7);
    if (c == 0) {
        *lit = bits_get(a, 8);
        *dist = 0;
        return 0;
    }
    *len = c - 1 + ARJ_THRESHOLD;
    *dist = fastest_number(a, 9, 4) + 1;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Reading a member
 * ------------------------------------------------------------------------------------------- */

/* Decompresses into buf[0..cap) with methods 1-4; returns the count, errors in member_err. */
static size_t read_lz(engine__arj *a, uint8_t *buf, size_t cap)
{
    uint8_t *win = a->window;
    size_t n = 0;

    while (n < cap && a->produced < a->orig_size) {
        if (a->match_left > 0) {
            uint32_t run = a->match_left;
            if (run > cap - n)
                run = (uint32_t)(cap - n);
            uint32_t src = a->wpos >= a->match_dist ? a->wpos - a->match_dist
                                                    : a->wpos + ARJ_DICSIZ - a->match_dist;
            uint32_t w = a->wpos;
            for (uint32_t k = 0; k < run; k++) {
                uint8_t byte = win[src];
                win[w] = byte;
                buf[n++] = byte;
                if (++w == ARJ_DICSIZ)
                    w = 0;
                if (++src == ARJ_DICSIZ)
                    src = 0;
            }
            a->wpos = w;
            a->match_left -= run;
            a->produced += run;
            continue;
        }

        unsigned lit = 0;
        uint32_t len = 0, dist = 0;
        int rc = a->method == ENGINE__ARJ_METHOD_FASTEST ? fastest_symbol(a, &lit, &len, &dist)
                                                         : lzh_symbol(a, &lit, &len, &dist);
        if (a->bit_err)
            rc = a->bit_err;
        if (rc != 0) {
            a->member_err = rc;
            break;
        }
        if (dist == 0) {
            win[a->wpos] = (uint8_t)lit;
            if (++a->wpos == ARJ_DICSIZ)
                a->wpos = 0;
            buf[n++] = (uint8_t)lit;
            a->produced++;
            continue;
        }
        uint32_t reach = a->produced < ARJ_DICSIZ ? a->produced : ARJ_DICSIZ;
        if (dist > reach) {
            a->member_err = ENGINE__ARJ_EFORMAT;
            break;
        }
        uint32_t room = a->orig_size - a->produced;
        a->match_left = len < room ? len : room;
        a->match_dist = dist;
    }
    return n;
}

/* Copies a stored member into buf[0..cap); returns the count, errors in member_err. */
static size_t read_stored(engine__arj *a, uint8_t *buf, size_t cap)
{
    size_t want = a->orig_size - a->produced;
    size_t have = a->in_end - a->in_pos;
    size_t n = want < cap ? want : cap;
    if (n > have)
        n = have;
    if (n == 0 && want > 0) {
        a->member_err = ENGINE__ARJ_ETRUNC;
        return 0;
    }
    memcpy(buf, a->data + a->in_pos, n);
    a->in_pos += n;
    a->produced += (uint32_t)n;
    return n;
}

/* Checks the member can be read and resets the decoder. Returns 0 or an error for the member. */
static int member_start(engine__arj *a)
{
    if (a->flags & ENGINE__ARJ_FLAG_GARBLED)
        return ENGINE__ARJ_EENCRYPTED;
    if (a->method > ENGINE__ARJ_METHOD_FASTEST)
        return ENGINE__ARJ_EMETHOD;
    if (a->method == ENGINE__ARJ_METHOD_STORED && a->comp_size != a->orig_size)
        return ENGINE__ARJ_EFORMAT;
    a->bitbuf = 0;
    a->bitcnt = 0;
    a->pad = 0;
    a->bit_err = 0;
    a->wpos = 0;
    a->match_left = 0;
    a->match_dist = 0;
    a->block_left = 0;
    a->t_table.kind = HUFF_EMPTY;
    a->c_table.kind = HUFF_EMPTY;
    a->p_table.kind = HUFF_EMPTY;
    return 0;
}

int engine__arj_read(engine__arj *a, uint8_t *buf, size_t cap, size_t *got)
{
    if (got != NULL)
        *got = 0;
    if (a == NULL || buf == NULL || got == NULL || cap == 0 || a->state != ST_MEMBER)
        return ENGINE__ARJ_EINVAL;
    if (a->member_err != 0)
        return a->member_err;
    if (!a->started) {
        a->started = true;
        a->member_err = member_start(a);
        if (a->member_err != 0)
            return a->member_err;
    }
    if (a->produced == a->orig_size) {
        if ((a->crc ^ ARJ_CRC_INIT) != a->want_crc)
            a->member_err = ENGINE__ARJ_ECRC;
        return a->member_err;
    }

    size_t n =
        a->method == ENGINE__ARJ_METHOD_STORED ? read_stored(a, buf, cap) : read_lz(a, buf, cap);
    a->crc = crc_update(a->crc_table, a->crc, buf, n);
    *got = n;
    return n > 0 ? 0 : a->member_err;
}

void engine__arj_close(engine__arj *a)
{
    free(a);
}

/* ---------------------------------------------------------------------------------------------
 * Error table
 * ------------------------------------------------------------------------------------------- */

const char *engine__arj_strerror(int err)
{
    switch (err) {
#define ENGINE__ARJ_ERR_MSG(name, code, msg)                                                       \
    case code:                                                                                     \
        return msg;
        ENGINE__ARJ_ERRNO_MAP(ENGINE__ARJ_ERR_MSG)
#undef ENGINE__ARJ_ERR_MSG
    }
    return "unknown error";
}

const char *engine__arj_err_name(int err)
{
    switch (err) {
#define ENGINE__ARJ_ERR_NAME(name, code, msg)                                                      \
    case code:                                                                                     \
        return "ENGINE__ARJ_" #name;
        ENGINE__ARJ_ERRNO_MAP(ENGINE__ARJ_ERR_NAME)
#undef ENGINE__ARJ_ERR_NAME
    }
    return "ENGINE__ARJ_EUNKNOWN";
}

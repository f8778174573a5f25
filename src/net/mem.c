/*
 * Memory for ngtcp2: the ngtcp2_mem every connection of an endpoint gets.
 *
 * ngtcp2 0.12 carves most of a connection's state out of pool blocks of 4
 * to 12 KiB that it mallocs once and keeps until the connection ends: one
 * per skip list (connection IDs, packet number gaps, stream ID gaps, the
 * ACK tracker, the retransmission buffer) and one per object pool (streams,
 * frames, sent packets). It fills a block from the front, and an idle
 * connection uses a few hundred bytes of each. From malloc those blocks sit
 * among other allocations and most of their pages become resident anyway.
 *
 * So a malloc of more than a page gets a page-aligned slot of whole pages
 * in a larger anonymous mapping instead: pages ngtcp2 never writes are never
 * faulted in, and a pool block costs one resident page until it is really
 * used. A freed slot goes back to the kernel (MADV_DONTNEED) and holds no
 * memory while free, except for the last few freed of each slot size, which
 * are kept as they are for the next request of the same size: a handshake
 * frees and asks again for about a dozen such blocks (the Initial and
 * Handshake packet number spaces), and a system call plus fresh pages for
 * each would be wasted work. A block of the same size plays the same part
 * (the same kind of skip list or pool), so it has little use for pages the
 * one before it left behind.
 *
 * calloc and realloc, and everything of a page or less, use malloc: ngtcp2
 * callocs structures it fills (the connection itself, about 8 KiB) and
 * reallocs buffers it fills, which whole pages would only round up. Every
 * block starts with a 16-byte header saying where it came from.
 *
 * An endpoint's connections all run on its loop thread, so nothing here is
 * locked.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "net/internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define ZKS__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ZKS__ASAN 1
#endif
#endif
#ifdef ZKS__ASAN
/* ASan's allocator does not know slots; poisoning their free and unused parts still catches
 * overruns and use after free. */
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* A class's first mapping has this many slots; each further one twice as many, up to the max. */
#define REGION_SLOTS_MIN 8u
#define REGION_SLOTS_MAX 64u

struct zks__pregion {
    zks__list link; /* in its class's list of regions with a free slot, while one is free */
    uint8_t *base;
    size_t slot_len;
    unsigned cls; /* pages per slot */
    unsigned nslots;
    unsigned nfree;
    unsigned free[]; /* stack of free slot indices */
};

typedef struct zks__phdr {
    zks__pregion *region; /* NULL: from malloc */
    size_t size;          /* bytes asked for */
} hdr;

_Static_assert(sizeof(hdr) == 16, "the header keeps blocks 16-byte aligned");

static zks__pregion *region_new(zks__pmem *pm, unsigned cls)
{
    unsigned n = REGION_SLOTS_MIN;
    for (size_t k = pm->nregions[cls]; k > 0 && n < REGION_SLOTS_MAX; k--)
        n *= 2;
    zks__pregion *r = malloc(sizeof *r + n * sizeof r->free[0]);
    if (r == NULL)
        return NULL;
    r->slot_len = (size_t)cls * pm->page;
    void *base =
        mmap(NULL, r->slot_len * n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        free(r);
        return NULL;
    }
    r->base = base;
    r->cls = cls;
    r->nslots = r->nfree = n;
    for (unsigned i = 0; i < n; i++)
        r->free[i] = n - 1 - i; /* the lowest address goes out first */
    POISON(r->base, r->slot_len * n);
    zks__list_push(&pm->avail[cls], &r->link);
    pm->nregions[cls]++;
    return r;
}

static void region_free(zks__pmem *pm, zks__pregion *r)
{
    UNPOISON(r->base, r->slot_len * r->nslots);
    munmap(r->base, r->slot_len * r->nslots);
    if (zks__list_linked(&r->link))
        zks__list_del(&r->link);
    pm->nregions[r->cls]--;
    free(r);
}

/* A slot of `cls` pages for `size` bytes, header filled in; NULL if no mapping could be had. */
static void *slot_get(zks__pmem *pm, unsigned cls, size_t size)
{
    /* A kept slot last used for the same size (the most recent first). */
    for (unsigned k = pm->nkept[cls]; k-- > 0;) {
        hdr *h = pm->kept[cls][k];
        if (h->size == size) {
            memmove(&pm->kept[cls][k], &pm->kept[cls][k + 1],
                    (--pm->nkept[cls] - k) * sizeof pm->kept[cls][0]);
            UNPOISON(h, sizeof(hdr) + size);
            pm->slots_used++;
            return h + 1;
        }
    }
    zks__pregion *r;
    if (zks__list_empty(&pm->avail[cls])) {
        r = region_new(pm, cls);
        if (r == NULL)
            return NULL;
    } else {
        r = ZKS__CONTAINER(pm->avail[cls].next, zks__pregion, link);
    }
    unsigned i = r->free[--r->nfree];
    if (r->nfree == 0)
        zks__list_del(&r->link);
    uint8_t *p = r->base + (size_t)i * r->slot_len;
    UNPOISON(p, sizeof(hdr) + size);
    hdr *h = (hdr *)(void *)p;
    h->region = r;
    h->size = size;
    pm->slots_used++;
    return p + sizeof(hdr);
}

static void slot_release(zks__pmem *pm, hdr *h);

/* Keeps a freed slot resident for the next request of its size; the oldest kept one goes. */
static void slot_put(zks__pmem *pm, hdr *h)
{
    unsigned cls = h->region->cls;
    hdr **kept = pm->kept[cls];
    if (pm->nkept[cls] == ZKS__PMEM_KEEP) {
        slot_release(pm, kept[0]);
        memmove(kept, kept + 1, (ZKS__PMEM_KEEP - 1) * sizeof kept[0]);
        pm->nkept[cls]--;
    }
    kept[pm->nkept[cls]++] = h;
    /* The header stays readable: slot_get matches on its size. */
    POISON((uint8_t *)(h + 1), h->region->slot_len - sizeof(hdr));
    pm->slots_used--;
}

/* Returns a slot to its mapping, and its pages to the kernel. */
static void slot_release(zks__pmem *pm, hdr *h)
{
    zks__pregion *r = h->region;
    uint8_t *p = (uint8_t *)h;
    unsigned i = (unsigned)((size_t)(p - r->base) / r->slot_len);
    POISON(p, r->slot_len);
    /* Nothing needs the contents; the pages go back to the kernel until the slot is used again. */
    (void)madvise(p, r->slot_len, MADV_DONTNEED);
    if (r->nfree == 0)
        zks__list_push(&pm->avail[r->cls], &r->link);
    r->free[r->nfree++] = i;
    /* An empty mapping goes, unless no other of its class has room (one stays for the next). */
    if (r->nfree == r->nslots && pm->avail[r->cls].next != pm->avail[r->cls].prev)
        region_free(pm, r);
}

/* Pages of a slot for a malloc of `size` bytes, or 0 when malloc serves it. */
static unsigned slot_class(const zks__pmem *pm, size_t size)
{
    if (size <= pm->page - sizeof(hdr) || size > ZKS__PMEM_MAX_PAGES * pm->page - sizeof(hdr))
        return 0;
    return (unsigned)((size + sizeof(hdr) + pm->page - 1) / pm->page);
}

static void *heap_get(size_t size, int zero)
{
    if (size > SIZE_MAX - sizeof(hdr))
        return NULL;
    hdr *h = zero ? calloc(1, sizeof(hdr) + size) : malloc(sizeof(hdr) + size);
    if (h == NULL)
        return NULL;
    h->region = NULL;
    h->size = size;
    return h + 1;
}

static void pm_free(void *ptr, void *user_data)
{
    if (ptr == NULL)
        return;
    hdr *h = (hdr *)ptr - 1;
    if (h->region)
        slot_put(user_data, h);
    else
        free(h);
}

static void *pm_malloc(size_t size, void *user_data)
{
    zks__pmem *pm = user_data;
    unsigned cls = slot_class(pm, size);
    if (cls) {
        void *p = slot_get(pm, cls, size);
        if (p)
            return p;
    }
    return heap_get(size, 0);
}

static void *pm_calloc(size_t nmemb, size_t size, void *user_data)
{
    (void)user_data;
    if (size && nmemb > SIZE_MAX / size)
        return NULL;
    return heap_get(nmemb * size, 1);
}

static void *pm_realloc(void *ptr, size_t size, void *user_data)
{
    if (ptr == NULL)
        return heap_get(size, 0);
    hdr *h = (hdr *)ptr - 1;
    if (h->region == NULL) {
        if (size > SIZE_MAX - sizeof(hdr))
            return NULL;
        hdr *n = realloc(h, sizeof(hdr) + size);
        if (n == NULL)
            return NULL;
        n->size = size;
        return n + 1;
    }
    void *n = heap_get(size, 0);
    if (n == NULL)
        return NULL;
    memcpy(n, ptr, h->size < size ? h->size : size);
    slot_put(user_data, h);
    return n;
}

void zks__pmem_init(zks__pmem *pm)
{
    memset(pm, 0, sizeof *pm);
    long page = sysconf(_SC_PAGESIZE);
    pm->page = page >= 1024 ? (size_t)page : 4096;
    for (unsigned i = 0; i <= ZKS__PMEM_MAX_PAGES; i++)
        zks__list_init(&pm->avail[i]);
    pm->mem.user_data = pm;
    pm->mem.malloc = pm_malloc;
    pm->mem.free = pm_free;
    pm->mem.calloc = pm_calloc;
    pm->mem.realloc = pm_realloc;
}

void zks__pmem_free(zks__pmem *pm)
{
    if (pm->slots_used) {
        /* A connection was not deleted: leave its mappings rather than pull them from under it. */
        ZKS_LOGE("net: %zu ngtcp2 blocks still in use at endpoint close", pm->slots_used);
        return;
    }
    for (unsigned i = 0; i <= ZKS__PMEM_MAX_PAGES; i++)
        while (pm->nkept[i])
            slot_release(pm, pm->kept[i][--pm->nkept[i]]);
    /* With no slot in use, every region is on its class's list. */
    for (unsigned i = 0; i <= ZKS__PMEM_MAX_PAGES; i++)
        while (!zks__list_empty(&pm->avail[i]))
            region_free(pm, ZKS__CONTAINER(pm->avail[i].next, zks__pregion, link));
}

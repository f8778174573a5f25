/*
 * Invites as QR codes: on the terminal with half-block characters (two
 * module rows per text line), or as a PNG file. The text is encoded without
 * case sensitivity, which lets libqrencode use its compact alphanumeric mode
 * for base32; invites are read back in either case.
 */
#include <png.h>
#include <qrencode.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define QUIET 2 /* modules of border on the terminal */

static int dark(const QRcode *q, int x, int y)
{
    if (x < 0 || y < 0 || x >= q->width || y >= q->width)
        return 0;
    return q->data[y * q->width + x] & 1;
}

int cli_qr_print(FILE *f, const char *text)
{
    QRcode *q = QRcode_encodeString(text, 0, QR_ECLEVEL_L, QR_MODE_8, 0);
    if (q == NULL)
        return -1;
    /* Light modules are drawn as blocks so the code reads on dark terminals too. */
    for (int y = -QUIET; y < q->width + QUIET; y += 2) {
        for (int x = -QUIET; x < q->width + QUIET; x++) {
            int top = !dark(q, x, y), bottom = !dark(q, x, y + 1);
            fputs(top && bottom ? "\u2588" : top ? "\u2580" : bottom ? "\u2584" : " ", f);
        }
        fputc('\n', f);
    }
    QRcode_free(q);
    return 0;
}

int cli_qr_png(const char *path, const char *text)
{
    enum { SCALE = 8, BORDER = 4 };
    QRcode *q = QRcode_encodeString(text, 0, QR_ECLEVEL_L, QR_MODE_8, 0);
    if (q == NULL) {
        cli_error("cannot make a QR code of the invite");
        return -1;
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        cli_error("cannot write %s", path);
        QRcode_free(q);
        return -1;
    }
    int side = (q->width + 2 * BORDER) * SCALE;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    unsigned char *row = malloc((size_t)side);
    int rc = -1;
    if (png == NULL || info == NULL || row == NULL)
        goto out;
    if (setjmp(png_jmpbuf(png)))
        goto out;
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)side, (png_uint_32)side, 8, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < side; y++) {
        int my = y / SCALE - BORDER;
        for (int x = 0; x < side; x++)
            row[x] = dark(q, x / SCALE - BORDER, my) ? 0 : 255;
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    rc = 0;
out:
    if (png)
        png_destroy_write_struct(&png, info ? &info : NULL);
    free(row);
    if (fclose(f) != 0)
        rc = -1;
    QRcode_free(q);
    if (rc != 0)
        cli_error("cannot write %s", path);
    return rc;
}

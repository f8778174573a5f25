/*
 * Invite codes on arbitrary input: the text parser, and opening arbitrary
 * bytes as a sealed invite under a fixed code (refused without a crash or a
 * read out of bounds; Argon2id runs only for inputs of a sealed size).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/code.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    uint8_t id[ZKS_CODE_ID_LEN], secret[ZKS_CODE_SECRET_LEN];
    if (zks_code_parse(id, secret, text) == 0) {
        /* What parses has 16 symbols: nothing but dashes and spaces besides. */
        size_t symbols = 0;
        for (size_t i = 0; text[i]; i++)
            symbols += text[i] != '-' && text[i] != ' ';
        if (symbols != 16)
            abort();
    }
    free(text);
    /* One in 64 inputs is also opened (each open costs an Argon2id run). */
    if (size >= 40 && size <= ZKS_CODE_SEALED_MAX && data[0] % 64 == 0) {
        static const uint8_t fid[ZKS_CODE_ID_LEN] = {1, 2, 3, 4, 5};
        static const uint8_t fsecret[ZKS_CODE_SECRET_LEN] = {6, 7, 8, 9, 10};
        char out[ZKS_CODE_SEALED_MAX];
        (void)zks_code_open(out, sizeof out, fid, fsecret, data, size);
    }
    return 0;
}

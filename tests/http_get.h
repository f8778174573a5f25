/*
 * One HTTP exchange with a server on 127.0.0.1, for the tests of the relay's
 * HTTP endpoints: sends `request` as given and returns the whole response
 * (the server closes after it), NUL-terminated. Include after <cmocka.h>.
 */
#ifndef ZKS_TESTS_HTTP_GET_H
#define ZKS_TESTS_HTTP_GET_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static void get(uint16_t port, const char *request, char *resp, size_t resp_len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(write(fd, request, strlen(request)), (ssize_t)strlen(request));
    size_t have = 0;
    ssize_t n;
    while (have + 1 < resp_len && (n = read(fd, resp + have, resp_len - 1 - have)) > 0)
        have += (size_t)n;
    resp[have] = '\0';
    close(fd);
}

#endif

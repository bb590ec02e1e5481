/* Stands in for an image's /lib64/ld-linux-x86-64.so.2: if the kernel ever loads it as the
 * interpreter of a host binary, /proc/self/exe is that host binary. Prints its device and inode. */
#include <stdio.h>
#include <sys/stat.h>

int main(void) {
    struct stat st;
    if (stat("/proc/self/exe", &st) != 0) {
        printf("exe unreadable\n");
        return 0;
    }
    printf("exe %lu %lu\n", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
    return 0;
}

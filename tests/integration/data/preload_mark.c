/* A library that leaves a mark wherever a dynamic loader loads it: the file
 * <MARK_DIR>/ran-on-<host name>, a line per process (its name). On the host the name is the
 * machine's; in a VM it is <node>-vm<job>. Built by the test: cc -shared -fPIC -DMARK_DIR=... */
#include <stdio.h>
#include <sys/utsname.h>

__attribute__((constructor)) static void leave_mark(void) {
    struct utsname u;
    char path[4096], name[64] = "";
    if (uname(&u) != 0) {
        return;
    }
    FILE *comm = fopen("/proc/self/comm", "r");
    if (comm != NULL) {
        if (fgets(name, sizeof name, comm) == NULL) {
            name[0] = '\0';
        }
        fclose(comm);
    }
    snprintf(path, sizeof path, "%s/ran-on-%s", MARK_DIR, u.nodename);
    FILE *mark = fopen(path, "a");
    if (mark != NULL) {
        fputs(name, mark);
        fclose(mark);
    }
}

/*
 * nofileload: run a command in which kexec_file_load(2) fails with ENOSYS, as it does on a
 * kernel built without CONFIG_KEXEC_FILE, while every other system call (kexec_load(2) among
 * them) works as usual.
 *
 * The e2e row load-minicap-fallback runs `nofileload minicap load --image /minicap.bzImage`
 * in the first kernel: minicap tries kexec_file_load, is told the kernel lacks it, and must
 * fall back to kexec_load. A seccomp filter is the only way to take the one system call away
 * in a stock kernel: lockdown, kexec_load_disabled and IMA appraisal refuse both calls, or
 * kexec_load first.
 *
 * Usage: nofileload COMMAND [ARGS...]   (statically linked by the harness: gcc -static)
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sock_filter filter[] = {
		/* Another ABI (i386 through int 0x80): leave it alone, minicap is x86_64. */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_kexec_file_load, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {
		.len = sizeof(filter) / sizeof(filter[0]),
		.filter = filter,
	};

	if (argc < 2) {
		fprintf(stderr, "usage: nofileload COMMAND [ARGS...]\n");
		return 2;
	}
	/* Without no_new_privs an unprivileged caller may not install a filter; root may, but
	 * setting it costs nothing and keeps the filter on across the exec. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		fprintf(stderr, "nofileload: prctl(PR_SET_NO_NEW_PRIVS): %s\n", strerror(errno));
		return 1;
	}
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
		fprintf(stderr, "nofileload: prctl(PR_SET_SECCOMP): %s\n", strerror(errno));
		return 1;
	}
	/* The filter's own proof: the call must now fail with ENOSYS. */
	if (syscall(__NR_kexec_file_load, -1, -1, 0UL, NULL, 0UL) != -1 || errno != ENOSYS) {
		fprintf(stderr, "nofileload: kexec_file_load is not blocked (errno %d)\n", errno);
		return 1;
	}
	printf("nofileload: kexec_file_load now fails with ENOSYS; running %s\n", argv[1]);
	fflush(stdout);
	execvp(argv[1], argv + 1);
	fprintf(stderr, "nofileload: %s: %s\n", argv[1], strerror(errno));
	return 127;
}

// SPDX-License-Identifier: MIT
/*
 * crashpoint: crashes the running kernel in a chosen way from a chosen
 * context, so that a dump mechanism can be tested against more than
 * `echo c > /proc/sysrq-trigger` (the idea of the Linux Kernel Dump Test
 * Tool of OLS 2006 and of the kernel's LKDTM; this module shares no code
 * with either).
 *
 *   insmod crashpoint.ko type=TYPE context=CONTEXT
 *
 * Everything happens from the module's init, on the CPU insmod runs on
 * (pin it with `taskset -c N insmod ...`); the deferred contexts are armed
 * on that same CPU (twocpu: and on other_cpu). Before the crash one line is
 * printed (twocpu: one on each CPU),
 *
 *   crashpoint: <type> in <context> on CPU <n>
 *
 * and the crash then prints its own message (the one the matrix runner
 * looks for in the dump's log):
 *
 *   panic     panic()                                 "Kernel panic - not syncing: crashpoint: ..."
 *   bug       BUG() (an oops; the guest runs with oops=panic)   "kernel BUG at"
 *   null      a load through a NULL pointer           "BUG: kernel NULL pointer dereference"
 *   divide    an integer division by zero (#DE)       "divide error"
 *   gpf       a load from a non-canonical address (#GP)  "general protection fault"
 *   overflow  unbounded recursion into the stack's guard page (a #DF on a
 *             vmapped stack)                          "stack guard page"
 *   smash     a write past a local array; the stack protector's check at
 *             the function's return                   "stack-protector: Kernel stack is corrupted"
 *   hardhang  a spin with interrupts off; nothing on this CPU can stop it
 *             but an NMI (QEMU's monitor `nmi` with unknown_nmi_panic=1)
 *             "NMI: Not continuing"
 *   softhang  a spin with interrupts on and preemption off; the soft-lockup
 *             watchdog (softlockup_panic=1)           "soft lockup"
 *
 * Contexts:
 *   process   insmod's own system call
 *   irqsoff   the same, between local_irq_save() and local_irq_restore()
 *   timer     a timer_list callback (the TIMER softirq)
 *   tasklet   a tasklet (the TASKLET softirq)
 *   work      a work item on the system workqueue (a kworker, process context)
 *   hardirq   an hrtimer in HRTIMER_MODE_REL_HARD: its callback runs in the
 *             timer interrupt itself, with interrupts off
 *   twocpu    two CPUs at the same moment: insmod's CPU and other_cpu= (by
 *             default the first other online CPU), each running a kthread
 *             bound to it ("crashpoint/<n>") that waits, preemption off, at a
 *             start line until the other has arrived too; then both crash the
 *             same way, each printing its own "crashpoint: <type> in twocpu on
 *             CPU <n>". Linux lets one CPU through: panic() takes panic_cpu
 *             and the loser stops in panic_smp_self_stop(); an oops takes
 *             die_lock in oops_begin() and the loser spins there. The winner's
 *             crash_kexec() then stops the loser with the crash NMI
 *             (crash_smp_send_stop()), which saves its registers where it
 *             spins. Before the kthreads start one line names both CPUs:
 *             "crashpoint: arming <type> in twocpu on CPU <n> and CPU <m>".
 *
 * softhang needs interrupts on, so it is refused in irqsoff and hardirq
 * (there it would be a hard hang); twocpu needs a second online CPU. A
 * refusal is a line starting "crashpoint: refused" and insmod failing with
 * EINVAL.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/interrupt.h>
#include <linux/timer.h>
#include <linux/hrtimer.h>
#include <linux/workqueue.h>
#include <linux/irqflags.h>
#include <linux/preempt.h>
#include <linux/smp.h>
#include <linux/string.h>
#include <linux/compiler.h>
#include <linux/kthread.h>
#include <linux/atomic.h>
#include <linux/ktime.h>
#include <linux/cpumask.h>
#include <linux/err.h>

MODULE_DESCRIPTION("Crash the kernel in a chosen way from a chosen context (dump tests)");
MODULE_LICENSE("Dual MIT/GPL");

static char *type = "panic";
module_param(type, charp, 0444);
MODULE_PARM_DESC(type, "panic, bug, null, divide, gpf, overflow, smash, hardhang, softhang");

static char *context = "process";
module_param(context, charp, 0444);
MODULE_PARM_DESC(context, "process, irqsoff, timer, tasklet, work, hardirq, twocpu");

static int other_cpu = -1;
module_param(other_cpu, int, 0444);
MODULE_PARM_DESC(other_cpu, "twocpu: the second CPU (default -1: the first online CPU other than insmod's)");

enum crash_type { PANIC, BUG_ON_PURPOSE, NULL_DEREF, DIVIDE, GPF, OVERFLOW, SMASH, HARDHANG, SOFTHANG };

static const char *const type_names[] = {
	[PANIC] = "panic", [BUG_ON_PURPOSE] = "bug", [NULL_DEREF] = "null", [DIVIDE] = "divide",
	[GPF] = "gpf", [OVERFLOW] = "overflow", [SMASH] = "smash", [HARDHANG] = "hardhang",
	[SOFTHANG] = "softhang",
};

enum crash_context { PROCESS, IRQSOFF, TIMER, TASKLET, WORK, HARDIRQ, TWOCPU };

static const char *const context_names[] = {
	[PROCESS] = "process", [IRQSOFF] = "irqsoff", [TIMER] = "timer", [TASKLET] = "tasklet",
	[WORK] = "work", [HARDIRQ] = "hardirq", [TWOCPU] = "twocpu",
};

static enum crash_type chosen_type;
static enum crash_context chosen_context;

/*
 * The crashes. Each is noinline and reads its operands through
 * OPTIMIZER_HIDE_VAR or volatile so that the compiler cannot prove the
 * fault at build time (and drop or replace the faulting instruction).
 */

static noinline void crash_null(void)
{
	int *p = NULL;

	OPTIMIZER_HIDE_VAR(p);
	pr_info("crashpoint: read %d\n", READ_ONCE(*p));
}

static noinline void crash_divide(void)
{
	volatile int numerator = 1;
	volatile int divisor = 0;

	pr_info("crashpoint: quotient %d\n", numerator / divisor);
}

static noinline void crash_gpf(void)
{
	/* Bit 63 set, bits 48..62 clear: not canonical with 4- or 5-level paging, so #GP, not #PF. */
	unsigned long *p = (unsigned long *)0x8000000000000000UL;

	OPTIMIZER_HIDE_VAR(p);
	pr_info("crashpoint: read %lu\n", READ_ONCE(*p));
}

/* Each level keeps 1 KiB live across the call, so a 16 KiB stack is gone
 * within a few dozen levels; the guard page below a vmapped stack turns
 * the next push into a double fault. */
static noinline unsigned long recurse(unsigned long depth)
{
	volatile char frame[1024];

	frame[0] = (char)depth;
	frame[sizeof(frame) - 1] = (char)depth;
	if (depth == 0)
		return frame[0];
	return recurse(depth - 1) + frame[sizeof(frame) - 1];
}

static noinline void crash_overflow(void)
{
	unsigned long depth = ~0UL;

	OPTIMIZER_HIDE_VAR(depth);
	pr_info("crashpoint: depth %lu\n", recurse(depth));
}

/* A local char array makes -fstack-protector-strong put a canary above
 * it; writing through a pointer whose object the compiler cannot see
 * (so FORTIFY_SOURCE has no size to check) runs over the canary, and the
 * check before `ret` calls __stack_chk_fail(), which panics. */
static noinline void crash_smash(void)
{
	char buf[16];
	char *p = buf;
	size_t i, n = sizeof(buf) + 32;

	OPTIMIZER_HIDE_VAR(p);
	OPTIMIZER_HIDE_VAR(n);
	for (i = 0; i < n; i++)
		WRITE_ONCE(p[i], 0x5a);
	pr_info("crashpoint: wrote %zu bytes into a %zu-byte array\n", n, sizeof(buf));
}

static noinline void hang_irqs_off(void)
{
	local_irq_disable();
	for (;;)
		cpu_relax();
}

static noinline void hang_preempt_off(void)
{
	preempt_disable();
	for (;;)
		cpu_relax();
}

static void crash_now(void)
{
	pr_emerg("crashpoint: %s in %s on CPU %d\n", type_names[chosen_type], context_names[chosen_context],
		 raw_smp_processor_id());
	switch (chosen_type) {
	case PANIC:
		panic("crashpoint: panic in %s", context_names[chosen_context]);
	case BUG_ON_PURPOSE:
		BUG();
	case NULL_DEREF:
		crash_null();
		break;
	case DIVIDE:
		crash_divide();
		break;
	case GPF:
		crash_gpf();
		break;
	case OVERFLOW:
		crash_overflow();
		break;
	case SMASH:
		crash_smash();
		break;
	case HARDHANG:
		hang_irqs_off();
		break;
	case SOFTHANG:
		hang_preempt_off();
		break;
	}
	pr_emerg("crashpoint: still alive after %s\n", type_names[chosen_type]);
}

/* The deferred contexts; each callback runs once, on the CPU it was armed on. */

static struct timer_list crash_timer;
static struct tasklet_struct crash_tasklet;
static struct work_struct crash_work;
static struct hrtimer crash_hrtimer;

static void timer_fn(struct timer_list *t)
{
	crash_now();
}

static void tasklet_fn(struct tasklet_struct *t)
{
	crash_now();
}

static void work_fn(struct work_struct *w)
{
	crash_now();
}

static enum hrtimer_restart hrtimer_fn(struct hrtimer *t)
{
	crash_now();
	return HRTIMER_NORESTART;
}

/*
 * twocpu: the start line. Each kthread counts itself in and spins until the
 * count says both are there, so the last to arrive releases both; nothing
 * else has to run on either CPU in between (insmod's own CPU is one of the
 * two, and a spinning kthread with preemption off would keep a releaser
 * there from ever running). A CPU still alone after TWOCPU_WAIT_NS crashes
 * anyway and says so: the run then lacks the other CPU's line and fails.
 */
#define TWOCPU_THREADS 2
#define TWOCPU_WAIT_NS (10 * NSEC_PER_SEC)

static atomic_t twocpu_arrived = ATOMIC_INIT(0);

static int twocpu_fn(void *unused)
{
	ktime_t deadline = ktime_add_ns(ktime_get(), TWOCPU_WAIT_NS);

	preempt_disable();
	atomic_inc(&twocpu_arrived);
	while (atomic_read(&twocpu_arrived) < TWOCPU_THREADS) {
		if (ktime_after(ktime_get(), deadline)) {
			pr_emerg("crashpoint: CPU %d alone at the start line after %llu s: crashing alone\n",
				 raw_smp_processor_id(), (unsigned long long)(TWOCPU_WAIT_NS / NSEC_PER_SEC));
			break;
		}
		cpu_relax();
	}
	crash_now();
	preempt_enable();
	return 0;
}

/* The kthreads for insmod's CPU `here` and `there`; the remote one is woken
 * first, since waking the local one may switch to it at once, and it then
 * keeps this CPU until the crash. */
static int arm_twocpu(int here, int there)
{
	struct task_struct *local, *remote;

	remote = kthread_create_on_cpu(twocpu_fn, NULL, there, "crashpoint/%u");
	if (IS_ERR(remote))
		return PTR_ERR(remote);
	local = kthread_create_on_cpu(twocpu_fn, NULL, here, "crashpoint/%u");
	if (IS_ERR(local)) {
		kthread_stop(remote);
		return PTR_ERR(local);
	}
	pr_info("crashpoint: arming %s in twocpu on CPU %d and CPU %d\n", type, here, there);
	wake_up_process(remote);
	wake_up_process(local);
	return 0;
}

static int lookup(const char *name, const char *const *names, size_t count)
{
	size_t i;

	for (i = 0; i < count; i++)
		if (sysfs_streq(name, names[i]))
			return i;
	return -1;
}

static int __init crashpoint_init(void)
{
	int t = lookup(type, type_names, ARRAY_SIZE(type_names));
	int c = lookup(context, context_names, ARRAY_SIZE(context_names));
	unsigned long flags;
	int cpu;

	if (t < 0 || c < 0) {
		pr_err("crashpoint: refused: unknown %s %s\n", t < 0 ? "type" : "context", t < 0 ? type : context);
		return -EINVAL;
	}
	if (t == SOFTHANG && (c == IRQSOFF || c == HARDIRQ)) {
		pr_err("crashpoint: refused: softhang needs interrupts on, %s has them off\n", context);
		return -EINVAL;
	}
	chosen_type = t;
	chosen_context = c;
	if (c == TWOCPU) {
		/* Sleeps (kthread creation): no get_cpu() here; taskset keeps insmod on its CPU. */
		cpu = raw_smp_processor_id();
		if (other_cpu < 0)
			other_cpu = cpumask_any_but(cpu_online_mask, cpu);
		if (other_cpu >= nr_cpu_ids || other_cpu == cpu || !cpu_online(other_cpu)) {
			pr_err("crashpoint: refused: twocpu needs a second online CPU (insmod on CPU %d, other_cpu %d)\n",
			       cpu, other_cpu);
			return -EINVAL;
		}
		return arm_twocpu(cpu, other_cpu);
	}
	cpu = get_cpu();
	pr_info("crashpoint: arming %s in %s on CPU %d\n", type, context, cpu);
	switch (chosen_context) {
	case PROCESS:
		put_cpu();
		crash_now();
		return 0;
	case IRQSOFF:
		put_cpu();
		local_irq_save(flags);
		crash_now();
		local_irq_restore(flags);
		return 0;
	case TIMER:
		timer_setup(&crash_timer, timer_fn, TIMER_PINNED);
		crash_timer.expires = jiffies + 1;
		add_timer_on(&crash_timer, cpu);
		break;
	case TASKLET:
		tasklet_setup(&crash_tasklet, tasklet_fn);
		tasklet_schedule(&crash_tasklet);
		break;
	case WORK:
		INIT_WORK(&crash_work, work_fn);
		queue_work_on(cpu, system_wq, &crash_work);
		break;
	case HARDIRQ:
		hrtimer_init(&crash_hrtimer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_PINNED_HARD);
		crash_hrtimer.function = hrtimer_fn;
		hrtimer_start(&crash_hrtimer, ms_to_ktime(1), HRTIMER_MODE_REL_PINNED_HARD);
		break;
	case TWOCPU:
		break; /* armed above */
	}
	put_cpu();
	/* The crash comes from the armed context; the module stays loaded (no exit function) so its code does. */
	return 0;
}
module_init(crashpoint_init);

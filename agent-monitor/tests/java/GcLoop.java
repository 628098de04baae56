// Test JVM for agent-monitor's hsperfdata reader: keeps a live heap, allocates
// garbage and forces a full GC every <interval-ms> so GC counters move.
// Usage: java GcLoop.java [interval-ms] [max-seconds] [idle-after-gcs]
// Prints "ready" once running and "gc <n>" after each System.gc(). With
// idle-after-gcs it stops allocating after that many GCs and prints "idle",
// so the counters hold still while a fixture is copied.
// Exits when stdin closes, so the test's guard can stop it with a normal
// shutdown (which deletes its hsperfdata file, unlike SIGKILL), and by itself
// after max-seconds so a lost test never leaves it running.
import java.util.ArrayList;
import java.util.List;

public class GcLoop {
    public static void main(String[] args) throws Exception {
        long intervalMs = args.length > 0 ? Long.parseLong(args[0]) : 500;
        long maxSeconds = args.length > 1 ? Long.parseLong(args[1]) : 120;
        int idleAfter = args.length > 2 ? Integer.parseInt(args[2]) : Integer.MAX_VALUE;
        long deadline = System.nanoTime() + maxSeconds * 1_000_000_000L;
        Thread stdinWatch = new Thread(() -> {
            try {
                while (System.in.read() >= 0) {
                }
            } catch (java.io.IOException e) {
                // Closed or broken: either way the parent is gone.
            }
            System.exit(0);
        });
        stdinWatch.setDaemon(true);
        stdinWatch.start();
        // Retained so heap used stays above zero after a full GC.
        List<byte[]> live = new ArrayList<>();
        for (int i = 0; i < 64; i++) {
            live.add(new byte[64 * 1024]);
        }
        System.out.println("ready");
        System.out.flush();
        long sink = 0;
        int gcs = 0;
        long nextGc = System.nanoTime() + intervalMs * 1_000_000L;
        while (System.nanoTime() < deadline) {
            byte[] garbage = new byte[32 * 1024];
            sink += garbage.length;
            if (System.nanoTime() >= nextGc) {
                System.gc();
                gcs++;
                System.out.println("gc " + gcs);
                System.out.flush();
                nextGc = System.nanoTime() + intervalMs * 1_000_000L;
                if (gcs >= idleAfter) {
                    System.out.println("idle");
                    System.out.flush();
                    while (System.nanoTime() < deadline) {
                        Thread.sleep(100);
                    }
                    break;
                }
            }
            if ((sink & 0x3FFFF) == 0) {
                Thread.sleep(1);
            }
        }
        System.out.println("done " + live.size() + " " + sink);
    }
}

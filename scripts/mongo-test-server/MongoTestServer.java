// The MongoDB-wire test server: mongo-java-server on one loopback port, reporting MongoDB 4.4 /
// wire version 9 (the built-in versions report at most 8, below what PyMongo 4.20 accepts).
//
//   java -cp CLASSPATH MongoTestServer --port N [--h2 FILE]
//
// Without --h2 the data lives in memory and is gone when the process ends; with it, in an H2
// MVStore file that a restarted server reads again. SIGTERM closes the backend cleanly.
import de.bwaldvogel.mongo.MongoBackend;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import java.util.List;

public final class MongoTestServer {
    private static final MongoVersion MONGO_4_4 = new MongoVersion() {
        @Override
        public List<Integer> getVersionArray() {
            return List.of(4, 4, 0);
        }

        @Override
        public int getWireVersion() {
            return 9;
        }
    };

    public static void main(String[] args) throws InterruptedException {
        String host = "127.0.0.1";
        int port = 27017;
        String h2File = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--port" -> port = Integer.parseInt(args[++i]);
                case "--host" -> host = args[++i];
                case "--h2" -> h2File = args[++i];
                default -> throw new IllegalArgumentException("unknown argument " + args[i]);
            }
        }
        MongoBackend backend = (h2File == null ? new MemoryBackend() : new H2Backend(h2File)).version(MONGO_4_4);
        MongoServer server = new MongoServer(backend);
        server.bind(host, port);
        Runtime.getRuntime().addShutdownHook(new Thread(server::shutdown));
        System.out.println("mongo-java-server listening on " + host + ":" + port
                + (h2File == null ? " (memory)" : " (h2 " + h2File + ")"));
        Thread.currentThread().join();
    }
}

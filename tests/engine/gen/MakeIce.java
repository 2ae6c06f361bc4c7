// MakeIce.java - writes an ICE-style LHA archive: level 0 headers, members compressed with
// -lh1- (LZHUF), through the jLHA library that Debian ships in jlha-utils. Used only to build the
// committed test samples (see make_ice_samples.sh); nothing at build or test time needs Java.
//
// Usage: java -cp /usr/share/java/jlha.jar MakeIce.java OUT.lzh METHOD FILE...
import java.io.FileOutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Date;
import jp.gr.java_conf.dangan.util.lha.LhaHeader;
import jp.gr.java_conf.dangan.util.lha.LhaOutputStream;

public class MakeIce {
    public static void main(String[] args) throws Exception {
        try (LhaOutputStream out = new LhaOutputStream(new FileOutputStream(args[0]))) {
            for (int i = 2; i < args.length; i++) {
                byte[] data = Files.readAllBytes(Path.of(args[i]));
                LhaHeader h = new LhaHeader(Path.of(args[i]).getFileName().toString(),
                                            new Date(1000000000000L));
                h.setCompressMethod(args[1]);
                h.setHeaderLevel(0);
                h.setOriginalSize(data.length);
                out.putNextEntry(h);
                out.write(data);
                out.closeEntry();
            }
        }
    }
}

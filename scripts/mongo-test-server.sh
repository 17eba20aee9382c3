#!/usr/bin/env bash
# Prepares the MongoDB-wire test server once: resolves mongo-java-server's classpath from Maven
# Central and compiles the launcher, both cached outside the clone. Prints the `java -cp` value.
#   scripts/mongo-test-server.sh [CACHE_DIR]     (default ~/.cache/session-analytics/mongo-java-server-1.47.0)
set -euo pipefail
here="$(cd "$(dirname "$0")/mongo-test-server" && pwd)"
version=$(sed -n 's:.*<mongo-java-server.version>\(.*\)</mongo-java-server.version>.*:\1:p' "$here/pom.xml")
cache="${1:-$HOME/.cache/session-analytics/mongo-java-server-$version}"
stamp=$(cat "$here/pom.xml" "$here/MongoTestServer.java" | sha256sum | cut -c1-16)
if [ -f "$cache/$stamp.ok" ] && [ -f "$cache/classpath.txt" ]; then
  classpath=$(cat "$cache/classpath.txt")
  # The cached jars must still be there (a cleaned ~/.m2 resolves them again).
  missing=0; IFS=: read -ra jars <<< "$classpath"
  for jar in "${jars[@]}"; do [ -f "$jar" ] || missing=1; done
  if [ "$missing" = 0 ]; then echo "$cache/classes:$classpath"; exit 0; fi
fi
install_debian() {
  (apt-get update -qq && apt-get install -y -qq "$@") >/dev/null || {
    echo "could not install $* (needs root and Debian's package registry)" >&2; exit 1; }
}
command -v javac >/dev/null || { echo "installing openjdk-17-jdk-headless" >&2; install_debian openjdk-17-jdk-headless; }
command -v mvn >/dev/null || { echo "installing maven" >&2; install_debian maven; }
mkdir -p "$cache"
rm -f "$cache"/*.ok
mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:build-classpath -Dmdep.outputFile="$cache/classpath.txt" >&2
rm -rf "$cache/classes"
javac -d "$cache/classes" -cp "$(cat "$cache/classpath.txt")" "$here/MongoTestServer.java"
touch "$cache/$stamp.ok"
echo "mongo-java-server $version ready in $cache" >&2
echo "$cache/classes:$(cat "$cache/classpath.txt")"

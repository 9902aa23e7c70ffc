"""A demo "user-service" for docker-compose.yml, registered in Redis by the
reference Python client.

ServiceInstance, ServiceRegistry and ServiceClient below are copied unchanged
from shared/seed/redis-service-discovery.md (the reference writers regdns
reads; discover() and get_instance() left out, as nothing here reads the
registry), so the registry holds exactly what a real service writes: the
instance key with a 30 s TTL, a heartbeat every 10 s, and the
registered/deregistered events. The rest is the service itself: a tiny HTTP
server whose GET /health answers 200, so `regdns health` marks the instance
healthy and `regdns serve` (health mode "healthy") answers for it.

Environment:
  REDIS_HOST, REDIS_PORT  the registry (default redis:6379)
  SERVICE_NAME            default user-service
  SERVICE_PORT            HTTP port, registered with the instance (default 8080)
  SERVICE_HOST            address to register; default: what the reference
                          client's _get_host() finds (the container's address)
  BIND                    HTTP listen address (default 0.0.0.0)

SIGTERM (docker stop) and Ctrl-C deregister the instance, through the
reference client's atexit hook.
"""

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
import atexit
from dataclasses import dataclass, asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Optional

import redis

logger = logging.getLogger(__name__)


# --- copied from the seed: ServiceInstance / ServiceRegistry -----------------

@dataclass
class ServiceInstance:
    service_name: str
    instance_id: str
    host: str
    port: int
    metadata: Dict[str, Any]
    registered_at: float
    last_heartbeat: float

class ServiceRegistry:
    def __init__(self, redis_client: redis.Redis, ttl: int = 30):
        self.redis = redis_client
        self.ttl = ttl  # Time-to-live for service registration

    def _service_key(self, service_name: str) -> str:
        return f"services:{service_name}"

    def _instance_key(self, service_name: str, instance_id: str) -> str:
        return f"services:{service_name}:instances:{instance_id}"

    def register(self, service_name: str, host: str, port: int,
                 metadata: Optional[Dict[str, Any]] = None) -> str:
        """Register a service instance."""
        instance_id = str(uuid.uuid4())
        now = time.time()

        instance = ServiceInstance(
            service_name=service_name,
            instance_id=instance_id,
            host=host,
            port=port,
            metadata=metadata or {},
            registered_at=now,
            last_heartbeat=now
        )

        instance_key = self._instance_key(service_name, instance_id)
        service_key = self._service_key(service_name)

        pipe = self.redis.pipeline()

        # Store instance data with TTL
        pipe.setex(instance_key, self.ttl, json.dumps(asdict(instance)))

        # Add to service set
        pipe.sadd(service_key, instance_id)

        # Publish registration event
        pipe.publish(
            f"services:{service_name}:events",
            json.dumps({"event": "registered", "instance_id": instance_id})
        )

        pipe.execute()

        logger.info(f"Registered {service_name} instance: {instance_id}")
        return instance_id

    def deregister(self, service_name: str, instance_id: str):
        """Deregister a service instance."""
        instance_key = self._instance_key(service_name, instance_id)
        service_key = self._service_key(service_name)

        pipe = self.redis.pipeline()
        pipe.delete(instance_key)
        pipe.srem(service_key, instance_id)
        pipe.publish(
            f"services:{service_name}:events",
            json.dumps({"event": "deregistered", "instance_id": instance_id})
        )
        pipe.execute()

        logger.info(f"Deregistered {service_name} instance: {instance_id}")

    def heartbeat(self, service_name: str, instance_id: str) -> bool:
        """Send heartbeat to keep registration alive."""
        instance_key = self._instance_key(service_name, instance_id)

        # Get current data
        data = self.redis.get(instance_key)
        if not data:
            return False

        instance_data = json.loads(data)
        instance_data["last_heartbeat"] = time.time()

        # Update with new TTL
        self.redis.setex(instance_key, self.ttl, json.dumps(instance_data))

        return True


# --- copied from the seed: ServiceClient -------------------------------------

class ServiceClient:
    def __init__(self, redis_client: redis.Redis, service_name: str,
                 port: int, metadata: Optional[Dict[str, Any]] = None):
        self.redis = redis_client
        self.registry = ServiceRegistry(redis_client)
        self.service_name = service_name
        self.port = port
        self.host = self._get_host()
        self.metadata = metadata or {}
        self.instance_id: Optional[str] = None
        self.heartbeat_interval = 10  # seconds
        self._heartbeat_thread: Optional[threading.Thread] = None
        self._running = False

        # Register cleanup on exit
        atexit.register(self.stop)

    def _get_host(self) -> str:
        """Get the host IP address."""
        hostname = socket.gethostname()
        return socket.gethostbyname(hostname)

    def start(self):
        """Start service registration and heartbeat."""
        self.instance_id = self.registry.register(
            self.service_name,
            self.host,
            self.port,
            self.metadata
        )

        self._running = True
        self._heartbeat_thread = threading.Thread(target=self._heartbeat_loop)
        self._heartbeat_thread.daemon = True
        self._heartbeat_thread.start()

        logger.info(f"Service client started: {self.service_name}:{self.instance_id}")

    def stop(self):
        """Stop service and deregister."""
        self._running = False

        if self._heartbeat_thread:
            self._heartbeat_thread.join(timeout=2)

        if self.instance_id:
            self.registry.deregister(self.service_name, self.instance_id)
            logger.info(f"Service client stopped: {self.service_name}")

    def _heartbeat_loop(self):
        """Background thread for sending heartbeats."""
        while self._running:
            try:
                success = self.registry.heartbeat(
                    self.service_name,
                    self.instance_id
                )
                if not success:
                    # Re-register if heartbeat fails
                    self.instance_id = self.registry.register(
                        self.service_name,
                        self.host,
                        self.port,
                        self.metadata
                    )
            except Exception as e:
                logger.error(f"Heartbeat failed: {e}")

            time.sleep(self.heartbeat_interval)

    def update_metadata(self, metadata: Dict[str, Any]):
        """Update service metadata."""
        self.metadata.update(metadata)
        # Re-register with new metadata
        if self.instance_id:
            self.registry.deregister(self.service_name, self.instance_id)
            self.instance_id = self.registry.register(
                self.service_name,
                self.host,
                self.port,
                self.metadata
            )


# --- the demo service ---------------------------------------------------------

def serve_http(bind: str, port: int, client: ServiceClient) -> ThreadingHTTPServer:
    """Answer GET /health (what regdns health probes) and GET / in a thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health":
                body = {"status": "ok"}
            elif self.path == "/":
                body = {"service": client.service_name,
                        "instance_id": client.instance_id,
                        "host": client.host, "port": client.port}
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # probes every few seconds: keep quiet
            logger.debug("%s %s", self.address_string(), format % args)

    server = ThreadingHTTPServer((bind, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    r = redis.Redis(host=os.environ.get("REDIS_HOST", "redis"),
                    port=int(os.environ.get("REDIS_PORT", "6379")))
    port = int(os.environ.get("SERVICE_PORT", "8080"))

    # The reference usage: the same service name and metadata, plus the
    # health_path convention `regdns health` (and the reference HealthChecker)
    # reads, here its default.
    client = ServiceClient(
        r,
        service_name=os.environ.get("SERVICE_NAME", "user-service"),
        port=port,
        metadata={"version": "1.0.0", "region": "us-east-1", "health_path": "/health"}
    )
    if os.environ.get("SERVICE_HOST"):
        client.host = os.environ["SERVICE_HOST"]

    # Serve /health before registering, so the first probe finds it up.
    serve_http(os.environ.get("BIND", "0.0.0.0"), port, client)
    client.start()
    print(f"registered {client.service_name} {client.instance_id} at "
          f"{client.host}:{client.port}", flush=True)

    # docker stop sends SIGTERM: exit normally, so the reference client's
    # atexit hook (ServiceClient.stop) deregisters the instance.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        # Run your service
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass  # atexit deregisters


if __name__ == "__main__":
    main()

#!/bin/sh
# Every Python service of the stack (and the dev container) starts here, as root, and runs its command as
# whoever owns the checkout mounted at /workshop: what Jupyter, a test or a terminal writes there is yours,
# whatever your uid (Linux), and Jupyter never says "read-only". The user `workshop` takes that uid and
# gid first, so `docker exec -u workshop` (the dev container's user) is the same person.
# A container started as another user (compose's WORKSHOP_USER) runs its command as that user, unchanged.
set -eu
if [ "$(id -u)" = 0 ] && [ -d /workshop ]; then
    uid=$(stat -c %u /workshop)
    gid=$(stat -c %g /workshop)
    if [ "$(id -u workshop)" != "$uid" ] || [ "$(id -g workshop)" != "$gid" ]; then
        # -o: the owner may share an id with a user of the image (root, when the checkout is root's).
        groupmod -o -g "$gid" workshop
        usermod -o -u "$uid" -g "$gid" workshop
    fi
    if [ "$uid" != 0 ]; then
        exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
    fi
fi
exec "$@"

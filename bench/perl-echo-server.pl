#!/usr/bin/perl
# The Perl original: a Danga::Socket 1.62 echo server, for side-by-side benchmarks.
use strict;
use warnings;
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Danga::Socket;

package EchoClient;
use base 'Danga::Socket';
use fields qw();

sub new {
    my ($class, $sock) = @_;
    my $self = fields::new($class);
    $self->SUPER::new($sock);
    $self->watch_read(1);
    return $self;
}

sub event_read {
    my $self = shift;
    my $buf = $self->read(1024 * 1024);
    unless (defined $buf) {
        $self->write(sub { $self->close('eof') });
        $self->watch_read(0);
        return;
    }
    return unless length $$buf;
    $self->write($buf);
}
sub event_err { $_[0]->close('err') }
sub event_hup { $_[0]->close('hup') }

package main;

$SIG{PIPE} = 'IGNORE';
$SIG{TERM} = $SIG{INT} = sub { exit 0 };
my $port = shift // 0;
my $listen = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 1024, ReuseAddr => 1, Blocking => 0,
) or die "listen: $!";
IO::Handle::blocking($listen, 0);
$| = 1;
print "listening on 127.0.0.1:" . $listen->sockport . "\n";
Danga::Socket->AddOtherFds(fileno($listen) => sub {
    while (my $c = $listen->accept) {
        IO::Handle::blocking($c, 0);
        setsockopt($c, IPPROTO_TCP, TCP_NODELAY, 1);
        EchoClient->new($c);
    }
});
Danga::Socket->EventLoop();
